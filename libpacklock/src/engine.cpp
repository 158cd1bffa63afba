#include "engine.hpp"

#include <condition_variable>
#include <mutex>

#include <packlock/error.hpp>

#include "kernel_lock.hpp"
#include "waiter_registry.hpp"

namespace packlock::detail {
namespace {

bool expired(const Deadline& deadline) noexcept {
  return deadline && Clock::now() >= *deadline;
}

// A waiter whose owner blocks its own thread until its turn comes.
class BlockingWaiter final : public Waiter {
 public:
  BlockingWaiter(Mode mode, ThreadToken thread) noexcept : Waiter(mode, thread) {}

  // False when the deadline passed first.
  bool wait_for_turn(const Deadline& deadline) {
    std::unique_lock lock(mutex_);
    const auto turn = [this] { return turn_; };
    if (!deadline) {
      cv_.wait(lock, turn);
      return true;
    }
    return cv_.wait_until(lock, *deadline, turn);
  }

  bool turn_has_come() {
    std::lock_guard lock(mutex_);
    return turn_;
  }

 private:
  void turn_came() noexcept override {
    std::lock_guard lock(mutex_);
    turn_ = true;
    cv_.notify_one();
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  bool turn_ = false;
};

// The head of the in-process queue contends for the kernel lock: attempt,
// and while busy wait for a release event (or the back-off step) and
// attempt again. Returns the locked sidecar, or sets `ec`.
Sidecar contend(const Pack& pack, Mode mode, bool may_wait, const Deadline& deadline,
                Backoff backoff, WaiterRegistration& registration, std::error_code& ec) noexcept {
  Sidecar sidecar = pack.take_sidecar(ec);
  if (ec) return {};
  ReleaseWatch watch(backoff, &pack.wake());
  // Watch before the first attempt, so a release between a busy attempt and
  // the wait is not lost.
  if (may_wait) watch.watch(sidecar);
  for (;;) {
    switch (attempt_kernel_lock(pack, sidecar, mode, ec)) {
      case Attempt::locked: return sidecar;
      case Attempt::failed: return {};
      case Attempt::busy: break;
    }
    if (!may_wait) {
      pack.keep_sidecar(std::move(sidecar));
      ec = errc::busy;
      return {};
    }
    if (!registration.active()) registration = WaiterRegistration(pack, mode);
    // An event drained now may announce a release that came after the
    // attempt: another process's waiter may have been woken by it and be
    // gone, so try again before sleeping, or the wake-up would be lost.
    const bool missed_events = watch.consume_events();
    // A holder left on an unlinked inode must not keep us waiting on it.
    if (!pack.path_names(sidecar)) {
      sidecar = pack.open_sidecar(ec);
      if (ec) return {};
      watch.watch(sidecar);
      continue;
    }
    watch.watch(sidecar);
    if (expired(deadline)) {
      pack.keep_sidecar(std::move(sidecar));
      ec = errc::timeout;
      return {};
    }
    if (!missed_events) watch.wait_until(deadline);
  }
}

// The waiter's turn has come: contend, then hold or leave the queue.
std::unique_ptr<Hold> take_turn(const std::shared_ptr<const Pack>& pack, BlockingWaiter& waiter,
                                bool may_wait, const Deadline& deadline, Backoff backoff,
                                WaiterRegistration& registration, std::error_code& ec) noexcept {
  Sidecar sidecar =
      contend(*pack, waiter.mode(), may_wait, deadline, backoff, registration, ec);
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
                                 Backoff backoff, std::error_code& ec) noexcept {
  ec.clear();
  BlockingWaiter waiter(mode, thread);
  WaiterRegistration registration;  // visible to other processes while waiting
  PackQueue& queue = pack->queue();
  switch (queue.admit(waiter, may_wait)) {
    case PackQueue::Admission::reentry:
    case PackQueue::Admission::busy:
      ec = errc::busy;
      return nullptr;
    case PackQueue::Admission::queued:
      registration = WaiterRegistration(*pack, mode);
      if (!waiter.wait_for_turn(deadline)) {
        queue.withdraw(waiter);
        ec = errc::timeout;
        return nullptr;
      }
      break;
    case PackQueue::Admission::proceed:
      break;
  }
  return take_turn(pack, waiter, may_wait, deadline, backoff, registration, ec);
}

}  // namespace

std::unique_ptr<Hold> try_acquire(const std::shared_ptr<const Pack>& pack, Mode mode,
                                  std::error_code& ec, ThreadToken thread) noexcept {
  return acquire_as(pack, mode, thread, /*may_wait=*/false, std::nullopt, Backoff{}, ec);
}

std::unique_ptr<Hold> acquire(const std::shared_ptr<const Pack>& pack, Mode mode,
                              const Deadline& deadline, std::error_code& ec,
                              Backoff backoff) noexcept {
  return acquire_as(pack, mode, this_thread_token(), /*may_wait=*/true, deadline, backoff, ec);
}

std::unique_ptr<Hold> acquire_ahead(const std::shared_ptr<const Pack>& pack, Mode mode,
                                    ThreadToken thread, const std::function<void()>& clear_the_way,
                                    std::error_code& ec) noexcept {
  ec.clear();
  BlockingWaiter waiter(mode, thread);
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
  WaiterRegistration registration;  // never used: no waiting
  return take_turn(pack, waiter, /*may_wait=*/false, std::nullopt, Backoff{}, registration, ec);
}

}  // namespace packlock::detail
