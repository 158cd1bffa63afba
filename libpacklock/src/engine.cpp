#include "engine.hpp"

#include <condition_variable>
#include <mutex>

#include <packlock/error.hpp>

#include "heartbeat.hpp"
#include "kernel_lock.hpp"
#include "stale.hpp"
#include "steal.hpp"
#include "waiter_registry.hpp"

namespace packlock::detail {
namespace {

bool expired(const Deadline& deadline) noexcept {
  return deadline && Clock::now() >= *deadline;
}

bool cancelled(const Cancellation* cancel) noexcept { return cancel && cancel->cancelled(); }

// A waiter whose owner blocks its own thread until its turn comes, the
// deadline passes, or its cancellation fires.
class BlockingWaiter final : public Waiter, Cancellation::Listener {
 public:
  enum class Outcome { turn, timeout, cancelled };

  BlockingWaiter(Mode mode, ThreadToken thread, Cancellation* cancel) noexcept
      : Waiter(mode, thread), cancel_(cancel) {}

  bool turn_has_come() {
    std::lock_guard lock(mutex_);
    return turn_;
  }

  Outcome wait_for_turn(const Deadline& deadline) {
    if (cancel_ && !cancel_->subscribe(*this)) return Outcome::cancelled;
    Outcome outcome;
    {
      std::unique_lock lock(mutex_);
      const auto woken = [this] { return turn_ || cancelled_; };
      if (!deadline) {
        cv_.wait(lock, woken);
      } else {
        cv_.wait_until(lock, *deadline, woken);
      }
      outcome = turn_ ? Outcome::turn : cancelled_ ? Outcome::cancelled : Outcome::timeout;
    }
    if (cancel_) cancel_->unsubscribe(*this);
    return outcome;
  }

 private:
  void turn_came() noexcept override {
    std::lock_guard lock(mutex_);
    turn_ = true;
    cv_.notify_one();
  }
  void cancelled() noexcept override {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    cv_.notify_one();
  }

  Cancellation* cancel_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool turn_ = false;
  bool cancelled_ = false;
};

// Why the head of the queue stops contending without the lock.
std::error_code stop_reason(bool may_wait, const Deadline& deadline, const Cancellation* cancel) {
  if (!may_wait) return errc::busy;
  if (cancelled(cancel)) return errc::cancelled;
  if (expired(deadline)) return errc::timeout;
  return {};
}

// A waiter no cancellation can end sleeps on the release word (see
// ReleaseWatch::sleep_until); the others poll the wake channel, with the
// cancellation's descriptor beside it. So does a wait on the heartbeat
// thread (a logger or callback that acquires): the thread that relays
// inotify events to sleepers would be the one asleep.
WakeBy wake_by(const Cancellation* cancel) noexcept {
  return cancel || HeartbeatService::on_service_thread() ? WakeBy::wake_channel
                                                         : WakeBy::release_word;
}

// The head of the in-process queue contends for the kernel lock: attempt,
// and while busy recover a stale lock or wait for a release event (or the
// back-off step) and attempt again. Returns the locked sidecar, or sets `ec`.
Sidecar contend(const Pack& pack, Mode mode, bool may_wait, const Deadline& deadline,
                Backoff backoff, Cancellation* cancel, WaiterRegistration& registration,
                std::error_code& ec) noexcept {
  Sidecar sidecar = pack.take_sidecar(ec);
  if (ec) return {};
  ReleaseWatch watch(backoff, &pack.wake());
  StaleRecovery recovery(pack);
  bool recovered = false;  // a try recovers once
  // Counted, watching, drained and guarded, all before the last attempt:
  // the next busy attempt may sleep at once. Events that came since are
  // still pending and end the sleep.
  bool ready_to_wait = false;
  // The release word to sleep on, read before each attempt, and the
  // heartbeat service whose thread relays inotify events to it.
  const WaitingCount* const sleep_on =
      wake_by(cancel) == WakeBy::release_word ? pack.waiting_count() : nullptr;
  HeartbeatService* const relay_service = sleep_on ? pack.heartbeat() : nullptr;
  for (;;) {
    const std::uint32_t seen = sleep_on ? sleep_on->releases() : 0;
    switch (attempt_kernel_lock(pack, sidecar, mode, ec)) {
      case Attempt::locked: return sidecar;
      case Attempt::failed: return {};
      case Attempt::busy: break;
    }
    // A wait that is over, cancelled or past its deadline, recovers nothing.
    if (!cancelled(cancel) && !expired(deadline) && (may_wait || !recovered)) {
      const Recovery recovery_result = recovery.after_busy(sidecar, mode);
      if (recovery_result == Recovery::locked) return sidecar;
      if (recovery_result == Recovery::retry) {
        recovered = true;
        ready_to_wait = false;
        sidecar = pack.open_sidecar(ec);
        if (ec) return {};
        continue;
      }
    }
    if (const std::error_code reason = stop_reason(may_wait, deadline, cancel)) {
      pack.keep_sidecar(std::move(sidecar));
      ec = reason;
      return {};
    }
    // The attempt may have left a ghost for the file the path names now.
    if (!ready_to_wait || !watch.watching(sidecar)) {
      // A waiter just counted must attempt once more before it sleeps: a
      // release before the count took effect wrote no wake-up.
      bool newly_counted = false;
      if (!registration.active()) {
        registration = WaiterRegistration(pack, mode, wake_by(cancel));
        newly_counted = registration.counted();
      }
      // Watched only now, after a busy attempt; a new watch missed what
      // came before it, so one more attempt first.
      const bool newly_watched = watch.watch(sidecar);
      // An event drained now may announce a release that came after the
      // attempt: another process's waiter may have been woken by it and be
      // gone, so try again before sleeping, or the wake-up would be lost.
      const bool missed_events = watch.consume_events() || newly_counted;
      // A holder left on an unlinked inode must not keep us waiting on it.
      // Checked after the watch is set: a later unlink or rename is an event.
      if (!pack.path_names(sidecar)) {
        sidecar = pack.open_sidecar(ec);
        if (ec) return {};
        continue;
      }
      if (missed_events || newly_watched) {
        ready_to_wait = true;
        continue;
      }
    }
    ready_to_wait = false;
    if (sleep_on) {
      watch.sleep_until(deadline, *sleep_on, seen,
                        relay_service ? relay_service->relay() : nullptr);
    } else {
      watch.wait_until(deadline, cancel ? cancel->native_handle() : -1);
    }
  }
}

// The waiter's turn has come: contend, then hold or leave the queue.
std::unique_ptr<Hold> take_turn(const std::shared_ptr<const Pack>& pack, BlockingWaiter& waiter,
                                bool may_wait, const Deadline& deadline, Backoff backoff,
                                Cancellation* cancel, WaiterRegistration& registration,
                                std::error_code& ec) noexcept {
  Sidecar sidecar =
      contend(*pack, waiter.mode(), may_wait, deadline, backoff, cancel, registration, ec);
  registration.reset();
  if (ec) {
    pack->queue().withdraw(waiter);
    return nullptr;
  }
  pack->queue().granted(waiter);
  return std::make_unique<Hold>(pack, std::move(sidecar), waiter.mode(), waiter.thread());
}

std::unique_ptr<Hold> acquire_as(const std::shared_ptr<const Pack>& pack, Mode mode,
                                 ThreadToken thread, bool may_wait, const Deadline& deadline,
                                 Backoff backoff, Cancellation* cancel,
                                 std::error_code& ec) noexcept {
  ec.clear();
  BlockingWaiter waiter(mode, thread, cancel);
  WaiterRegistration registration;  // visible to other processes while waiting
  PackQueue& queue = pack->queue();
  switch (queue.admit(waiter, may_wait)) {
    case PackQueue::Admission::reentry:
    case PackQueue::Admission::busy:
      ec = errc::busy;
      return nullptr;
    case PackQueue::Admission::queued:
      registration = WaiterRegistration(*pack, mode, wake_by(cancel));
      switch (waiter.wait_for_turn(deadline)) {
        case BlockingWaiter::Outcome::turn: break;
        case BlockingWaiter::Outcome::timeout:
          queue.withdraw(waiter);
          ec = errc::timeout;
          return nullptr;
        case BlockingWaiter::Outcome::cancelled:
          queue.withdraw(waiter);
          ec = errc::cancelled;
          return nullptr;
      }
      break;
    case PackQueue::Admission::proceed:
      break;
  }
  return take_turn(pack, waiter, may_wait, deadline, backoff, cancel, registration, ec);
}

}  // namespace

std::unique_ptr<Hold> try_acquire(const std::shared_ptr<const Pack>& pack, Mode mode,
                                  std::error_code& ec, ThreadToken thread) noexcept {
  return acquire_as(pack, mode, thread, /*may_wait=*/false, std::nullopt, Backoff{}, nullptr,
                    ec);
}

std::unique_ptr<Hold> acquire(const std::shared_ptr<const Pack>& pack, Mode mode,
                              const Deadline& deadline, std::error_code& ec, Backoff backoff,
                              Cancellation* cancel) noexcept {
  return acquire_as(pack, mode, this_thread_token(), /*may_wait=*/true, deadline, backoff, cancel,
                    ec);
}

std::unique_ptr<Hold> acquire_ahead(const std::shared_ptr<const Pack>& pack, Mode mode,
                                    ThreadToken thread, const std::function<void()>& clear_the_way,
                                    std::error_code& ec) noexcept {
  ec.clear();
  BlockingWaiter waiter(mode, thread, nullptr);
  PackQueue& queue = pack->queue();
  const PackQueue::Admission admission = queue.admit_ahead(waiter);
  if (admission == PackQueue::Admission::reentry) {
    ec = errc::busy;
    return nullptr;
  }
  clear_the_way();
  if (admission != PackQueue::Admission::proceed && !waiter.turn_has_come()) {
    queue.withdraw(waiter);
    ec = errc::busy;
    return nullptr;
  }
  // What stands in the way now is another process's (or a foreign) holder.
  Sidecar sidecar = seize_sidecar(*pack, mode, ec);
  if (ec) {
    queue.withdraw(waiter);
    return nullptr;
  }
  queue.granted(waiter);
  return std::make_unique<Hold>(pack, std::move(sidecar), mode, thread);
}

}  // namespace packlock::detail
