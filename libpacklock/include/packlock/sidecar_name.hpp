#pragma once
// The sidecar's name in a pack unless a caller chooses another: the name
// that grex, the Go package and flock(1) users share for one lock.

namespace packlock {

inline constexpr const char kDefaultSidecarName[] = ".grex-lock";

}  // namespace packlock
