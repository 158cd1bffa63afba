#include "wait_thread.hpp"

#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <vector>

#include "fork.hpp"

namespace packlock::detail {
namespace {

// Wait threads that have ended their run: each hands itself over here (it
// cannot join itself), and is joined when the next wait thread starts, or
// at exit.
struct Finished {
  std::mutex mutex;
  std::vector<std::thread> threads;
};

void join_finished() noexcept;

Finished& finished() {
  static Finished* const instance = [] {
    std::atexit(join_finished);
    return new Finished;  // never destroyed
  }();
  return *instance;
}

void join_finished() noexcept {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(finished().mutex);
    threads.swap(finished().threads);
  }
  for (std::thread& thread : threads) thread.join();
}

}  // namespace

WaitThread::WaitThread() noexcept : generation_(fork_generation()) {}

WaitThread::~WaitThread() {
  if (!thread_.joinable()) return;
  if (generation_ != fork_generation()) {
    // A forked child's copy names a thread of the parent: forget it.
    std::construct_at(&thread_);
    return;
  }
  thread_.join();
}

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
    if (thread_.joinable()) thread_.join();  // the last run, which has ended
    join_finished();
    // Born with every signal blocked: the application's signals are for its
    // own threads; the wait unblocks its own signal while it waits.
    sigset_t all, previous;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous);
    try {
      thread_ = std::thread([self = shared_from_this()] { self->run(); });
    } catch (...) {
      ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
      throw;
    }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    ::pthread_setname_np(thread_.native_handle(), kWaitThreadName);
    running_ = true;
  } catch (const std::system_error& e) {
    if (!ready_.empty() && ready_.back() == waiter) ready_.pop_back();
    waiter->no_wait_thread(e.code());
  } catch (...) {
    if (!ready_.empty() && ready_.back() == waiter) ready_.pop_back();
    waiter->no_wait_thread(std::make_error_code(std::errc::not_enough_memory));
  }
}

// Under mutex_, on the thread itself, as it ends: whoever comes next joins it.
void WaitThread::hand_over_to_joiner() noexcept {
  try {
    std::lock_guard lock(finished().mutex);
    finished().threads.push_back(std::move(thread_));
  } catch (...) {
    // Without memory: the next start or the destructor joins it.
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
        hand_over_to_joiner();
        return;
      }
      next = std::move(ready_.front());
      ready_.pop_front();
    }
    next->contend_now();
  }
}

}  // namespace packlock::detail
