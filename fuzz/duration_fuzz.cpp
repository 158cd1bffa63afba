// The command line's duration parser: never crashes, and whatever it
// accepts is a non-negative duration spelled as a number with an optional
// unit, which format_duration can show.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "duration.hpp"

namespace {

bool spelled_as_duration(std::string_view text) {
  for (const std::string_view unit : {"ms", "s", "m", "h"}) {
    if (text.ends_with(unit)) {
      text.remove_suffix(unit.size());
      break;
    }
  }
  if (text.empty()) return false;
  for (const char c : text) {
    if ((c < '0' || c > '9') && c != '.') return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto duration = packlock::cli::parse_duration(text);
  if (!duration) return 0;
  if (duration->count() < 0 || !spelled_as_duration(text)) std::abort();
  if (packlock::cli::format_duration(*duration).empty()) std::abort();
  return 0;
}
