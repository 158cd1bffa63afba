#pragma once
// Cancelling a blocking acquire from another thread: what the Go face's
// Context carries, and what an asynchronous acquire's cancellation slot
// fires. A waiter queued in this process is told through a listener; one
// blocked in flock(2) is interrupted (kernel_wait.hpp).

#include <atomic>
#include <cstddef>
#include <mutex>
#include <vector>

#include "kernel_wait.hpp"

namespace packlock::detail {

// Thread-safe.
class Cancellation final {
 public:
  class Listener {
   public:
    // Called once, by the cancelling thread, with the cancellation's mutex
    // held: record the fact and wake the owner, nothing more.
    virtual void cancelled() noexcept = 0;

   protected:
    ~Listener() = default;
  };

  Cancellation() noexcept = default;
  Cancellation(const Cancellation&) = delete;
  Cancellation& operator=(const Cancellation&) = delete;

  void cancel() noexcept;
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

  // Ends a wait in flock(2) that passes it to wait_in_kernel().
  WaitInterrupt& interrupt() noexcept { return interrupt_; }

  // True when subscribed; false when already cancelled (nothing will call).
  bool subscribe(Listener& listener);
  void unsubscribe(Listener& listener) noexcept;
  // How many wait now: a waiter has subscribed when it blocks.
  std::size_t listener_count();

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::vector<Listener*> listeners_;
  WaitInterrupt interrupt_;
};

}  // namespace packlock::detail
