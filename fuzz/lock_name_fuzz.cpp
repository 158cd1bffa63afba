// LockManager's name validator: never crashes, and every name it accepts
// stays below the lock directory and names no hidden file: only
// [A-Za-z0-9._/-], no empty component, none starting with a dot, within
// the length limits. printable_name always gives printable ASCII.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "lock_name.hpp"

namespace {

bool allowed(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '/' || c == '-';
}

bool safe_name(std::string_view name) {
  if (name.empty() || name.size() > packlock::detail::kMaxNameLength) return false;
  for (const char c : name) {
    if (!allowed(c)) return false;
  }
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = name.find('/', start);
    const std::string_view part = name.substr(start, slash - start);
    if (part.empty() || part.front() == '.' ||
        part.size() > packlock::detail::kMaxComponentLength) {
      return false;
    }
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view name(reinterpret_cast<const char*>(data), size);
  if (packlock::detail::is_lock_name(name) && !safe_name(name)) std::abort();
  for (const char c : packlock::detail::printable_name(name)) {
    if (c < 0x20 || c > 0x7e) std::abort();
  }
  return 0;
}
