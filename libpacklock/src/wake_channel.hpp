#pragma once
// The path from a packlock holder's release to waiters in other processes
// that wait on descriptors: asynchronous waiters, and blocking ones that a
// cancellation can end. (Other blocking waiters sleep on the release word of
// the waiters file, a futex: see WaitingCount and inotify_relay.hpp.)
//
// inotify reports a holder's close, but on the kernels we measured a waiter
// woken through inotify runs about 150 us later, while one woken through a
// pipe runs in about 10 us (a waiter parked in flock(2) itself: 7 us). So
// each pack has a FIFO beside its sidecar, `<sidecar>.wake`: every packlock
// process opens it read-write (never blocking, never ENXIO or SIGPIPE), a
// releaser writes one byte after unlocking, and every waiter polls it and
// drains it. Level-triggered, so no wake-up is lost between a waiter's busy
// attempt and its wait. inotify stays for releases by other tools (close of
// a flock(1) holder) and for an unlinked or replaced sidecar.
//
// Best effort: without the FIFO (a directory we may not write, a FIFO we may
// not write, a filesystem without FIFOs), waiters fall back on inotify and
// the back-off timer.

#include <string>

#include "unique_fd.hpp"

namespace packlock::detail {

inline constexpr const char* kWakeSuffix = ".wake";

class WakeChannel final {
 public:
  WakeChannel() noexcept = default;
  // Opens (creating) `<sidecar_name>.wake` in `dir_fd`, refusing anything
  // but a FIFO and never following a symlink.
  WakeChannel(int dir_fd, const std::string& sidecar_name) noexcept;

  int native_handle() const noexcept { return fifo_.get(); }
  // After a release: wakes every waiter that polls the channel.
  void notify() const noexcept;
  // Before waiting again: empties the channel; true if it held anything.
  bool drain() const noexcept;

 private:
  UniqueFd fifo_;
};

}  // namespace packlock::detail
