#pragma once
// Cancelling a blocking acquire from another thread: what the Go face's
// Context carries. A waiter queued in this process is told through a
// listener; one waiting for the kernel lock polls the cancellation's
// eventfd beside its release events, so cancelling wakes it at once.

#include <atomic>
#include <mutex>
#include <vector>

#include "unique_fd.hpp"

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

  // Readable once cancelled; -1 when no eventfd could be had (waiters then
  // notice at their next back-off step, within 250 ms).
  int native_handle() const noexcept;

  // True when subscribed; false when already cancelled (nothing will call).
  bool subscribe(Listener& listener);
  void unsubscribe(Listener& listener) noexcept;

 private:
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mutex_;
  mutable UniqueFd event_;
  std::vector<Listener*> listeners_;
};

}  // namespace packlock::detail
