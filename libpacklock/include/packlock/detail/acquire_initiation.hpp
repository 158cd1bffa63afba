#pragma once
// The engine's asynchronous acquire behind PackLock::async_acquire and
// LockManager's operations, and the adapter from any Asio completion
// handler to it. Not part of the API.

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/dispatch.hpp>
#include <asio/executor_work_guard.hpp>

#include <packlock/mode.hpp>
#include <packlock/pack_lock_hold.hpp>

namespace packlock {

namespace detail {

class AsyncAcquire;
using AsyncCompletion = std::function<void(std::error_code, PackLockHold)>;

// The engine's asynchronous acquire, behind the template below. It never
// completes inside start_async_acquire(); cancel_async_acquire() may be
// called from any thread, any number of times.
std::shared_ptr<AsyncAcquire> make_async_acquire(
    std::shared_ptr<const Pack> pack, asio::any_io_executor executor, Mode mode,
    std::optional<std::chrono::steady_clock::time_point> deadline, AsyncCompletion completion);
void start_async_acquire(const std::shared_ptr<AsyncAcquire>& operation);
void cancel_async_acquire(const std::weak_ptr<AsyncAcquire>& operation,
                          asio::cancellation_type type) noexcept;

// now + timeout, or none when that is beyond the clock's range.
inline std::optional<std::chrono::steady_clock::time_point> deadline_after(
    std::chrono::steady_clock::duration timeout) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (timeout > std::chrono::steady_clock::time_point::max() - now) return std::nullopt;
  return now + timeout;
}

// The deadline of a Timeout; a negative one has passed already.
inline std::optional<std::chrono::steady_clock::time_point> deadline_of(
    const Timeout& timeout) noexcept {
  if (!timeout) return std::nullopt;
  return deadline_after(std::max(*timeout, std::chrono::steady_clock::duration::zero()));
}

// The engine's side of any completion handler of an operation that
// completes with (error, Hold) on whatever thread: keeps the handler's
// executor busy until then, and runs the handler there with the result.
// The handler's cancellation slot is left to the caller, which clears it
// here once complete.
template <typename Hold, typename Handler>
std::function<void(std::error_code, Hold)> completion_for(Handler&& handler,
                                                           const asio::any_io_executor& fallback) {
  using HandlerType = std::decay_t<Handler>;
  auto slot = asio::get_associated_cancellation_slot(handler);
  auto work = asio::make_work_guard(asio::get_associated_executor(handler, fallback));
  // std::function needs a copyable target; the handler may be move-only.
  auto shared = std::make_shared<HandlerType>(std::forward<Handler>(handler));
  return [shared, work, slot](std::error_code ec, Hold hold) mutable {
    if (slot.is_connected()) slot.clear();
    asio::dispatch(work.get_executor(), [shared, ec, hold = std::move(hold)]() mutable {
      (*shared)(ec, std::move(hold));
    });
    work.reset();
  };
}

// Adapts any completion handler to the engine: keeps the handler's executor
// busy while the operation runs, runs the handler there, and connects its
// cancellation slot. The timeout runs from the launch (a deferred operation
// launched later waits as long as one launched at once).
class AcquireInitiation {
 public:
  AcquireInitiation(std::shared_ptr<const Pack> pack, asio::any_io_executor executor,
                    Timeout timeout)
      : pack_(std::move(pack)), executor_(std::move(executor)), timeout_(timeout) {}

  template <typename Handler>
  void operator()(Handler&& handler, Mode mode) const {
    auto slot = asio::get_associated_cancellation_slot(handler);
    AsyncCompletion complete = completion_for<PackLockHold>(std::forward<Handler>(handler), executor_);
    auto operation =
        make_async_acquire(pack_, executor_, mode, deadline_of(timeout_), std::move(complete));
    if (slot.is_connected()) {
      slot.assign([weak = std::weak_ptr<AsyncAcquire>(operation)](asio::cancellation_type type) {
        cancel_async_acquire(weak, type);
      });
    }
    start_async_acquire(operation);
  }

 private:
  std::shared_ptr<const Pack> pack_;
  asio::any_io_executor executor_;
  Timeout timeout_;
};

}  // namespace detail

}  // namespace packlock
