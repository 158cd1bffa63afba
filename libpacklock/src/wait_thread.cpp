#include "wait_thread.hpp"

#include <pthread.h>
#include <signal.h>

#include <thread>

namespace packlock::detail {

WaitThread::WaitThread() noexcept = default;

void WaitThread::joined() noexcept {
  std::lock_guard lock(mutex_);
  ++waiters_;
}

void WaitThread::left() noexcept {
  std::lock_guard lock(mutex_);
  if (--waiters_ == 0) work_.notify_one();
}

void WaitThread::turn_came(std::shared_ptr<AsyncWaiter> waiter) noexcept {
  std::unique_lock lock(mutex_);
  try {
    ready_.push_back(waiter);
    if (running_) {
      work_.notify_one();
      return;
    }
    // Born with every signal blocked: the application's signals are for its
    // own threads; the wait unblocks its own signal while it waits.
    sigset_t all, previous;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    std::thread thread;
    try {
      thread = std::thread([self = shared_from_this()] { self->run(); });
    } catch (...) {
      ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
      throw;
    }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    ::pthread_setname_np(thread.native_handle(), kWaitThreadName);
    // Detached: it ends on its own when the pack has no asynchronous waiter
    // left, and nothing needs to wait for that. A joinable thread would
    // have to be joined by someone, at exit too, while it may still be
    // finishing its last run.
    thread.detach();
    running_ = true;
  } catch (const std::system_error& e) {
    if (!ready_.empty() && ready_.back() == waiter) ready_.pop_back();
    waiter->no_wait_thread(e.code());
  } catch (...) {
    if (!ready_.empty() && ready_.back() == waiter) ready_.pop_back();
    waiter->no_wait_thread(std::make_error_code(std::errc::not_enough_memory));
  }
}

void WaitThread::run() noexcept {
  for (;;) {
    std::shared_ptr<AsyncWaiter> next;
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [this] { return !ready_.empty() || waiters_ == 0; });
      if (ready_.empty()) {
        running_ = false;
        return;
      }
      next = std::move(ready_.front());
      ready_.pop_front();
    }
    next->contend_now();
  }
}

}  // namespace packlock::detail
