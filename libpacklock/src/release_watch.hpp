#pragma once
// How a waiter learns that the lock it waits for may have been released.
//
// The event source is inotify on the sidecar's inode: a holder releases by
// closing its descriptor, which the kernel reports as IN_CLOSE_*; a sidecar
// unlinked or replaced (recovery, steal, rm) reports IN_ATTRIB (link count),
// IN_DELETE_SELF or IN_MOVE_SELF. Some releases send nothing: a foreign
// `flock -u` that keeps its descriptor open, a holder on another host of a
// network filesystem. For those a back-off timer grows from `first` to
// `cap`, so such a release is seen within `cap`.
//
// The safety net starts at milliseconds, not microseconds: a waiter that
// sleeps with a timer due within a few hundred microseconds wakes markedly
// later on a release (measured on a 2-vCPU VM, same run: waiters with a
// 100 us first step owned the lock 16-20 us after the release, p99 about
// 200 us; with a 10 ms first step 13-14 us, p99 about 55 us; a waiter
// parked in flock(2) 8-11 us, p99 about 55 us). Each frequent timer wake-up
// also costs the waiter CPU.
//
// The kernel reports a close a moment before it drops the lock, so an
// attempt made right after an inotify event can still find the lock busy;
// after such an event the timer restarts at `after_event`, short, to cover
// that race. A wake-up through the wake channel or the release word comes
// after the unlock and needs no such retry.
//
// Not thread-safe: one waiter owns one watch.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>

#include "sidecar.hpp"
#include "unique_fd.hpp"
#include "wake_channel.hpp"

namespace packlock::detail {

class InotifyRelay;
class WaitingCount;

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;

struct Backoff {
  std::chrono::nanoseconds first = std::chrono::milliseconds(10);
  std::chrono::nanoseconds cap = std::chrono::milliseconds(250);
  std::chrono::nanoseconds after_event = std::chrono::microseconds(100);
};

class ReleaseWatch final {
 public:
  // `wake`, the pack's wake channel, must outlive the watch (null: none).
  ReleaseWatch(Backoff backoff, const WakeChannel* wake) noexcept;
  ReleaseWatch(const ReleaseWatch&) = delete;
  ReleaseWatch& operator=(const ReleaseWatch&) = delete;
  ~ReleaseWatch();

  // Watches the inode `sidecar` has open (again, if it changed). Without
  // inotify (no instance left, no /proc) the back-off timer alone wakes.
  // True when it set a new watch: events before it were not seen, so the
  // caller attempts the lock once more before it waits. Waiters watch only
  // after a busy attempt: an uncontended acquisition sets no inotify mark
  // (whose teardown a process pays when it exits).
  bool watch(const Sidecar& sidecar) noexcept;
  // Whether it watches the inode `sidecar` has open.
  bool watching(const Sidecar& sidecar) const noexcept {
    return wd_ >= 0 && dev_ == sidecar.dev && ino_ == sidecar.ino;
  }

  // Blocks until an event arrives, the back-off period passes, or the
  // deadline, whichever is first; true when events are pending (left for
  // consume_events(), so an attempt can be made first). A signal (EINTR)
  // only ends the step early: the caller retries and its deadline alone
  // decides a timeout. `also`, when not -1, ends the wait too once it is
  // readable (a cancellation).
  bool wait_until(const Deadline& deadline, int also = -1) noexcept;

  // The same for a blocking waiter that no cancellation can end: sleeps on
  // `count`'s release word while it is still `seen` (read before the last
  // attempt), this watch's inotify events relayed to it through `relay`
  // (inotify_relay.hpp). Without a relay (null, or no epoll entry to be
  // had), or without inotify,
  // it sleeps on the word alone: packlock's releases still wake it at once,
  // other tools' only at the end of the back-off step. It does not fall back
  // to the wake channel: releasers write that only for counted listeners.
  void sleep_until(const Deadline& deadline, const WaitingCount& count, std::uint32_t seen,
                   InotifyRelay* relay) noexcept;

  // For event loops: the inotify descriptor (-1 without one) and the wake
  // channel's (-1 without one), readable when events are pending;
  // consume_events() drains both and reports whether there were any (and
  // restarts the back-off: short after an inotify event, at `first` after
  // a wake-up); next_delay() is the back-off step to sleep now.
  int native_handle() const noexcept { return inotify_.get(); }
  int wake_handle() const noexcept { return wake_ ? wake_->native_handle() : -1; }
  bool consume_events() noexcept;
  std::chrono::nanoseconds next_delay() noexcept;

 private:
  // The next back-off step, cut short by the deadline.
  std::chrono::nanoseconds delay_until(const Deadline& deadline) noexcept;

  Backoff backoff_;
  const WakeChannel* wake_;
  std::chrono::nanoseconds step_;
  UniqueFd inotify_;
  int wd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace packlock::detail
