#include "duration.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace packlock::cli {
namespace {

struct Unit {
  std::string_view suffix;
  double nanoseconds;
};

// Longest suffix first, so "ms" is not read as "m" followed by garbage.
constexpr std::array<Unit, 5> kUnits{{
    {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}, {"", 1e9}}};

// Digits with at most one '.', at least one digit: no sign, no exponent, no
// "inf", which strtod would all accept.
bool plain_decimal(std::string_view number) noexcept {
  int digits = 0, dots = 0;
  for (const char c : number) {
    if (c >= '0' && c <= '9') {
      ++digits;
    } else if (c == '.') {
      ++dots;
    } else {
      return false;
    }
  }
  return digits > 0 && dots <= 1;
}

}  // namespace

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) noexcept {
  for (const Unit& unit : kUnits) {
    if (!text.ends_with(unit.suffix)) continue;
    const std::string_view number = text.substr(0, text.size() - unit.suffix.size());
    if (!plain_decimal(number)) continue;
    const double value = std::strtod(std::string(number).c_str(), nullptr) * unit.nanoseconds;
    // Beyond about 292 years nanoseconds overflow.
    if (!(value < 9.2e18)) return std::nullopt;
    return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(value)));
  }
  return std::nullopt;
}

std::string format_duration(std::chrono::nanoseconds span) {
  using namespace std::chrono;
  const double seconds = duration<double>(span).count();
  std::array<char, 32> text{};
  if (span < 1s) {
    std::snprintf(text.data(), text.size(), "%lldms",
                  static_cast<long long>(duration_cast<milliseconds>(span).count()));
  } else if (span < 60s) {
    std::snprintf(text.data(), text.size(), "%.1fs", seconds);
  } else if (span < 1h) {
    const auto whole = duration_cast<std::chrono::seconds>(span).count();
    std::snprintf(text.data(), text.size(), "%lldm %llds", static_cast<long long>(whole / 60),
                  static_cast<long long>(whole % 60));
  } else {
    const auto whole = duration_cast<minutes>(span).count();
    std::snprintf(text.data(), text.size(), "%lldh %lldm", static_cast<long long>(whole / 60),
                  static_cast<long long>(whole % 60));
  }
  return text.data();
}

}  // namespace packlock::cli
