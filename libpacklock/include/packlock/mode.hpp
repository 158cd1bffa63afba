#pragma once
// Lock modes shared by every face of packlock.

#include <string_view>

namespace packlock {

// exclusive: one holder at a time (flock LOCK_EX).
// shared: any number of shared holders, excluding exclusive ones (LOCK_SH).
enum class Mode { exclusive, shared };

constexpr std::string_view to_string(Mode mode) noexcept {
  return mode == Mode::exclusive ? "exclusive" : "shared";
}

}  // namespace packlock
