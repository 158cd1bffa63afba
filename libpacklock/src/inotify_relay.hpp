#pragma once
// Turns inotify events into futex wake-ups, for blocking waiters that sleep
// on their pack's release word (see WaitingCount).
//
// A blocking waiter sleeps in FUTEX_WAIT rather than in ppoll: a releaser's
// FUTEX_WAKE lets the scheduler run the waiter at once, where a pipe's
// wake-up tells it the writer is about to sleep (measured on a 2-vCPU VM,
// same runs, rounds where both processes shared a vCPU: the waiter came
// back from its wait 2-5 us sooner). A futex cannot be waited on together
// with a descriptor, so the inotify events that announce other tools'
// releases (a flock(1) holder's close) and a replaced sidecar reach the
// sleeper through this relay: an epoll instance holding the inotify
// instances of sleeping waiters, each armed once per sleep (EPOLLONESHOT,
// level-triggered: an event already queued when the waiter arms fires at
// once). When one fires, the relay bumps the release word of the pack that
// waiter sleeps on and wakes its sleepers. Other processes' waiters of that
// pack wake too and find the lock as it is: a spurious wake-up, for other
// tools' events only.
//
// The relay has no thread of its own: the heartbeat thread polls its epoll
// instance beside its own descriptors (HeartbeatService::relay). On this
// host every live thread of a process, even one that only sleeps, makes
// the process's wake-ups land on the other vCPU more often (README,
// Benchmarks), so the process keeps one library thread, not two.

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "unique_fd.hpp"

namespace packlock::detail {

class WaitingCount;

class InotifyRelay final {
 public:
  InotifyRelay() noexcept = default;
  InotifyRelay(const InotifyRelay&) = delete;
  InotifyRelay& operator=(const InotifyRelay&) = delete;

  // Creates the epoll instance if there is none yet: true when there is
  // one. Called under the lock of the service whose thread polls it.
  bool open() noexcept;
  // The epoll instance to poll (-1 before open()).
  int native_handle() const noexcept { return epoll_.get(); }
  // Once native_handle() polls readable: relays every event that fired.
  void relay_fired() noexcept;

  // Until disarm(): the next event on `inotify_fd` wakes `count`'s sleepers.
  // False when the descriptor could not be armed.
  bool arm(int inotify_fd, const WaitingCount& count) noexcept;
  // After the sleep: `count` may go away. An armed registration that did
  // not fire stays armed in the kernel; its event, if one comes, is ignored.
  void disarm(int inotify_fd) noexcept;
  // Before `inotify_fd` is closed: the number may name another instance
  // next.
  void forget(int inotify_fd) noexcept;

 private:
  UniqueFd epoll_;
  std::mutex mutex_;
  // The count each armed descriptor wakes (null: disarmed); every
  // descriptor here is registered in epoll_. Guarded by mutex_.
  std::unordered_map<int, const WaitingCount*> targets_;
};

}  // namespace packlock::detail
