#pragma once
// Contention: the one state machine that takes a pack's kernel lock. Every
// face drives it: the blocking acquire and try_acquire (engine.hpp) on the
// caller's thread, async_acquire on the pack's wait thread, LockManager
// through both, and steal.
//
//   attempt    flock(LOCK_NB), then the ghost-lock guard: the path must
//              still name the locked inode, or the lock is dropped and the
//              attempt made on what the path names now;
//   busy       a steal unlinks the sidecar of a holder who will be told
//              (stale.hpp); any other acquirer judges staleness and
//              recovers a stale lock as the pack's policy allows, unless
//              its wait is over (cancelled, past the deadline, a try that
//              recovered once);
//   wait       block in flock(2) (kernel_wait.hpp) until the kernel grants
//              the lock, the deadline or the next stale check comes, the
//              wait is cancelled, or the sidecar's inode changes; a grant
//              goes through the guard, anything else back to the attempt.
//
// Only the head of the pack's in-process queue contends (lock_table.hpp).
//
// The loop itself (contend_on) is the same for every medium: a pack's
// sidecar here, an etcd key for the locks of a cluster (cluster_lock.hpp),
// whose attempt puts its key, whose wait watches the key before it, and
// which judges no staleness (leases expire on their own).

#include <system_error>

#include <packlock/mode.hpp>

#include "cancellation.hpp"
#include "kernel_wait.hpp"
#include "pack.hpp"
#include "sidecar.hpp"

namespace packlock::detail {

// How many fresh sidecars a steal takes a chance on, after unlinking a busy
// one or finding it replaced: other processes may win each before we
// attempt it; past this many the lock is left to them.
inline constexpr int kStealRounds = 4;

struct ContendRequest {
  Mode mode = Mode::exclusive;
  // false: attempt (and recover once) but never wait: errc::busy.
  bool may_wait = true;
  // Rob a holder of another process who will be told, instead of judging
  // staleness; never waits.
  bool steal = false;
  Deadline deadline;              // none: no limit
  Cancellation* cancel = nullptr;  // none: not cancellable
};

// What a step of a contention came to.
enum class Step {
  locked,  // the lock is held: done
  busy,    // held by another: judge it, then stop or wait
  again,   // attempt again (the wait ended, the lock was recovered)
  failed,  // `ec` says why: done
  pending,  // an answer is awaited: the medium calls contend_on again when it is in
};

// Why a busy lock is not waited for: errc::busy (no wait allowed),
// errc::cancelled, errc::timeout; none: wait.
std::error_code stop_reason(const ContendRequest& request) noexcept;
// The request's cancellation has fired, or its deadline passed.
bool wait_is_over(const ContendRequest& request) noexcept;

// The loop every medium runs. A Medium has
//   Step attempt(std::error_code&);     take the lock if it is free
//   Step after_busy(std::error_code&);  steal, or recover a stale lock
//   Step wait(std::error_code&);        until the lock may be free
//   void give_up() noexcept;            the request stops (ec is set)
// A medium that waits without blocking (an asynchronous cluster acquire)
// returns Step::pending from attempt or wait when it has sent a request,
// and runs the loop again once the answer is in; the loop starts over with
// the attempt, which takes the answer.
template <typename Medium>
Step contend_on(Medium& medium, const ContendRequest& request, std::error_code& ec) noexcept {
  for (;;) {
    Step step = medium.attempt(ec);
    if (step == Step::busy) step = medium.after_busy(ec);
    if (step == Step::busy) {
      if (const std::error_code reason = stop_reason(request)) {
        medium.give_up();
        ec = reason;
        return Step::failed;
      }
      step = medium.wait(ec);
    }
    if (step == Step::locked || step == Step::failed || step == Step::pending) return step;
  }
}

// Returns the locked sidecar, or sets `ec`: errc::busy (no wait allowed),
// errc::timeout, errc::cancelled (then no stale lock is recovered, Go
// parity; the first attempt is made even when already cancelled), or an
// OS error.
Sidecar contend(const Pack& pack, const ContendRequest& request, std::error_code& ec) noexcept;

}  // namespace packlock::detail
