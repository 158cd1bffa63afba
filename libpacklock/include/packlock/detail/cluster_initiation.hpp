#pragma once
// The engine's asynchronous cluster acquire behind
// ClusterLock::async_acquire, and the adapter from any Asio completion
// handler to it. Not part of the API.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/cancellation_type.hpp>

#include <packlock/detail/acquire_initiation.hpp>
#include <packlock/mode.hpp>

namespace packlock {

class ClusterLock;
class ClusterLockHold;

namespace detail {

class ClusterAcquireOperation;
using ClusterCompletion = std::function<void(std::error_code, ClusterLockHold)>;

// The engine's operation (cluster_async.cpp): made, then started once the
// handler's cancellation slot is connected to it. It never completes
// inside these calls (none is made for a lock that is not open: the
// completion is posted); cancel_cluster_acquire() may be called from any
// thread, any number of times.
std::shared_ptr<ClusterAcquireOperation> make_cluster_acquire(
    const ClusterLock& lock, asio::any_io_executor executor, Mode mode,
    std::optional<std::chrono::steady_clock::time_point> deadline, ClusterCompletion completion);
void start_cluster_acquire(const std::shared_ptr<ClusterAcquireOperation>& operation);
void cancel_cluster_acquire(const std::weak_ptr<ClusterAcquireOperation>& operation,
                            asio::cancellation_type type) noexcept;

// Holds a copy of the lock (`Lock` is ClusterLock, complete where this is
// used): a deferred operation may be launched after the lock is gone.
template <typename Lock, typename Hold>
class ClusterAcquireInitiation {
 public:
  ClusterAcquireInitiation(Lock lock, asio::any_io_executor executor, Timeout timeout)
      : lock_(std::move(lock)), executor_(std::move(executor)), timeout_(timeout) {}

  template <typename Handler>
  void operator()(Handler&& handler, Mode mode) const {
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto operation = make_cluster_acquire(
        lock_, executor_, mode, deadline_of(timeout_),
        completion_for<Hold>(std::forward<Handler>(handler), executor_));
    if (!operation) return;
    if (slot.is_connected()) {
      slot.assign([weak = std::weak_ptr<ClusterAcquireOperation>(operation)](
                      asio::cancellation_type type) { cancel_cluster_acquire(weak, type); });
    }
    start_cluster_acquire(operation);
  }

 private:
  Lock lock_;
  asio::any_io_executor executor_;
  Timeout timeout_;
};

}  // namespace detail
}  // namespace packlock
