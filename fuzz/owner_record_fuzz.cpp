// The owner-record reader: whatever a sidecar holds, parsing never crashes
// or throws, and a record it accepts is in range (pid 1 to 2^22, version
// 1) and survives a round trip through format_owner_record.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <packlock/owner.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view content(reinterpret_cast<const char*>(data), size);
  const auto record = packlock::parse_owner_record(content);
  if (!record) return 0;
  if (record->pid <= 0 || record->pid > (1 << 22) ||
      record->version != packlock::kOwnerRecordVersion) {
    std::abort();
  }
  const std::string written = packlock::format_owner_record(*record);
  if (written.size() > packlock::kOwnerRecordMaxSize) std::abort();
  const auto again = packlock::parse_owner_record(written);
  if (!again || again->pid != record->pid || again->host != record->host ||
      again->token != record->token || again->mode != record->mode) {
    std::abort();
  }
  return 0;
}
