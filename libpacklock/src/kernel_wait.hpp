#pragma once
// The wait itself: a thread blocks in flock(2), and the kernel hands it the
// lock. While it blocks, the kernel lists it in /proc/locks ("->" lines)
// and wakes it on any tool's release, flock(1) included. Nothing else
// wakes it but one real-time signal, directed at that thread alone:
//
// - a deadline (or the next stale check) arms a POSIX timer of the thread
//   (timer_create with SIGEV_THREAD_ID);
// - a cancellation (WaitInterrupt) fires that same timer at once;
// - the sidecar's inode is unlinked, replaced or renamed: the thread's
//   inotify instance sends the signal itself (O_ASYNC with F_SETOWN_EX to
//   the thread, F_SETSIG), so a waiter on an inode nobody will release
//   looks at the path again.
//
// A signal that came a moment before the thread entered flock(2) would be
// lost, so both timers repeat every kRetry until the waiter has let go.
// O_ASYNC is on only during the wait, and the timer is disarmed before the
// waiter returns: the signal never interrupts a call of the application.
// The handler does nothing and is installed without SA_RESTART, so the
// interrupted flock(2) returns EINTR. In the waiting thread the signal is
// unblocked for the wait alone (servers block every signal in workers).
//
// Thread-safety: each thread has its own timer and inotify instance.

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>

#include <packlock/mode.hpp>

#include "sidecar.hpp"

namespace packlock::detail {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;

class ThreadWait;

// The signal a process's waits are interrupted with: the one named by
// PACKLOCK_WAIT_SIGNAL ("RTMIN+N", "RTMAX-N" or a number), else
// SIGRTMAX-3. 0 when the variable names no real-time signal.
int default_wait_signal() noexcept;

// "SIGRTMAX-3" for the manual and the error messages.
std::string wait_signal_name(int signo);

// Ends a wait from another thread: thread-safe. Sticky: a wait that
// begins after interrupt() ends at once.
class WaitInterrupt final {
 public:
  WaitInterrupt() noexcept = default;
  WaitInterrupt(const WaitInterrupt&) = delete;
  WaitInterrupt& operator=(const WaitInterrupt&) = delete;

  void interrupt() noexcept;
  bool interrupted() const noexcept;

 private:
  friend class ThreadWait;
  mutable std::mutex mutex_;
  bool interrupted_ = false;
  ThreadWait* inside_ = nullptr;  // the thread waiting now, if any
};

enum class WaitEnd {
  granted,  // the kernel granted the lock on `sidecar`
  woken,    // the deadline, an interrupt, an inotify event or a stray EINTR
  failed,   // `ec` says why (the signal is the application's, flock failed)
};

// Blocks in flock(2) on `sidecar` in `mode` until the kernel grants it,
// `wake_at` passes, `interrupt` (may be null) fires, or the sidecar's inode
// changes. Returns `woken` without blocking when an event may have been
// missed before the wait (the inode's first watch, events queued since the
// last wait): the caller then looks at the path and waits again.
// errc::wait_signal_taken when the application has a handler of its own
// for `signo`.
WaitEnd wait_in_kernel(const Sidecar& sidecar, Mode mode, const Deadline& wake_at,
                       WaitInterrupt* interrupt, int signo, std::error_code& ec) noexcept;

}  // namespace packlock::detail
