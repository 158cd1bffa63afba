#include "lock_name.hpp"

#include <cstdio>

#include <packlock/error.hpp>

namespace packlock::detail {
namespace {

bool allowed(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool valid_component(std::string_view component) noexcept {
  if (component.empty() || component.size() > kMaxComponentLength) return false;
  if (component.front() == '.') return false;  // ".", "..", hidden files, the sidecar
  for (const char c : component) {
    if (!allowed(c)) return false;  // NUL, spaces, controls, non-ASCII, ...
  }
  return true;
}

}  // namespace

std::error_code check_lock_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLength) return errc::invalid_name;
  // Splitting on every slash makes a leading, trailing or doubled slash an
  // empty component.
  for (std::size_t begin = 0;;) {
    const std::size_t slash = name.find('/', begin);
    if (!valid_component(name.substr(begin, slash - begin))) return errc::invalid_name;
    if (slash == std::string_view::npos) return {};
    begin = slash + 1;
  }
}

std::string printable_name(std::string_view name) {
  constexpr std::size_t kShown = 80;
  std::string shown;
  for (const char c : name.substr(0, kShown)) {
    if (c >= 0x20 && c < 0x7f) {
      shown += c;
    } else {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<unsigned char>(c));
      shown += escaped;
    }
  }
  if (name.size() > kShown) shown += "...";
  return shown;
}

}  // namespace packlock::detail
