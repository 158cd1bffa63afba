#pragma once
// A pack's wait thread: the one thread of this process that waits in
// flock(2) for the pack's asynchronous waiters, one after another in their
// FIFO order, so that Asio waiters park no thread of their own (at most one
// per pack waited on). It starts when an asynchronous waiter's turn comes
// and ends when the pack has no asynchronous waiter left; a cancellation
// interrupts its wait (kernel_wait.hpp).
//
// Thread-safety: every member is guarded by mutex_. Lock order: a pack's
// queue mutex, then this one (turn_came() is called under the first).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <system_error>

#include "lock_table.hpp"

namespace packlock::detail {

// An asynchronous waiter, as the wait thread sees it.
class AsyncWaiter : public Waiter {
 public:
  using Waiter::Waiter;

  // On the wait thread, once the waiter's turn has come: contend for the
  // kernel lock and complete, whatever the outcome.
  virtual void contend_now() noexcept = 0;
  // No wait thread could be started: complete with the error, later (this
  // is called under the queue's mutex).
  virtual void no_wait_thread(std::error_code ec) noexcept = 0;

 protected:
  ~AsyncWaiter() = default;
};

// The thread's name (/proc/self/task/TID/comm).
inline constexpr const char* kWaitThreadName = "packlock-wait";

class WaitThread final : public std::enable_shared_from_this<WaitThread> {
 public:
  // The running thread, detached, holds a reference.
  WaitThread() noexcept;
  WaitThread(const WaitThread&) = delete;
  WaitThread& operator=(const WaitThread&) = delete;

  // An asynchronous waiter of the pack starts, or leaves for good.
  void joined() noexcept;
  void left() noexcept;

  // The waiter's turn has come: the thread contends for it next. Without
  // memory or a thread, the waiter is told (no_wait_thread).
  void turn_came(std::shared_ptr<AsyncWaiter> waiter) noexcept;

 private:
  void run() noexcept;

  std::mutex mutex_;
  std::condition_variable work_;
  std::deque<std::shared_ptr<AsyncWaiter>> ready_;
  std::size_t waiters_ = 0;
  bool running_ = false;  // a thread runs, or is about to
};

}  // namespace packlock::detail
