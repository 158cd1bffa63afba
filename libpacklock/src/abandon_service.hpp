#pragma once
// Ends, without running their handlers, the asynchronous operations still
// pending when their execution context shuts down (an io_context destroyed
// mid-wait): otherwise an operation would hold on to its lock request, its
// descriptors or its lease, and post to a context that is gone.
//
// Operation has `void abandon()`, which returns once nothing of the
// operation runs any more.

#include <memory>
#include <mutex>
#include <vector>

#include <asio/execution_context.hpp>

namespace packlock::detail {

template <typename Operation>
class AbandonService final : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;

  explicit AbandonService(asio::execution_context& context)
      : asio::execution_context::service(context) {}

  void add(const std::shared_ptr<Operation>& operation) {
    std::lock_guard lock(mutex_);
    operations_.push_back(operation);
  }

  void remove(const Operation* operation) {
    std::lock_guard lock(mutex_);
    std::erase_if(operations_, [&](const auto& weak) {
      const auto alive = weak.lock();
      return !alive || alive.get() == operation;
    });
  }

 private:
  void shutdown() override {
    std::vector<std::weak_ptr<Operation>> pending;
    {
      std::lock_guard lock(mutex_);
      pending.swap(operations_);
    }
    for (const auto& weak : pending) {
      if (const auto operation = weak.lock()) operation->abandon();
    }
  }

  std::mutex mutex_;
  std::vector<std::weak_ptr<Operation>> operations_;
};

}  // namespace packlock::detail
