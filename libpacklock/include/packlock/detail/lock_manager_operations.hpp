#pragma once
// LockManager's machinery behind its templates (lock_manager.hpp): the
// ticket every request holds, the steps implemented in lock_manager.cpp,
// and the Asio operations of async_acquire and async_request. Not part of
// the API.

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_state.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>

#include <packlock/cluster.hpp>
#include <packlock/error.hpp>
#include <packlock/named_locks.hpp>
#include <packlock/pack_lock.hpp>

namespace packlock {

namespace detail {

struct ClusterTarget;

// One request of this process, from its first step until released: pending,
// then granted (holding the lock), and in the process-wide bookkeeping
// (query, steal) all that time. Move-only; the destructor releases.
class Ticket {
 public:
  Ticket() noexcept = default;
  explicit Ticket(std::shared_ptr<RequestEntry> entry) noexcept : entry_(std::move(entry)) {}
  Ticket(Ticket&& other) noexcept = default;
  Ticket& operator=(Ticket&& other) noexcept;
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  ~Ticket() { (void)release(); }

  // The granted lock, or nullopt (not granted, or released).
  std::optional<Lock> lock() const;
  // The lock to acquire: a pack's, or (for a manager over etcd) a cluster
  // lock; both null for an empty ticket.
  std::shared_ptr<const Pack> pack() const noexcept;
  const ClusterLock* cluster_lock() const noexcept;
  const ClusterTarget* cluster() const noexcept;
  explicit operator bool() const noexcept { return static_cast<bool>(entry_); }
  void grant(PackLockHold hold) noexcept;
  // `tied_to_thread`: the calling thread holds it (re-entry check).
  void grant(ClusterLockHold hold, bool tied_to_thread) noexcept;
  // For a cluster lock the calling thread holds already through another
  // request, how it holds it (exclusive if any request does): waiting
  // would be a deadlock. (The engine makes this check itself for a pack's
  // lock.)
  std::optional<Mode> held_by_this_thread() const;
  // Releases what is held and leaves the bookkeeping. errc::hijacked when
  // the lock was taken away while held, errc::unlock_unsuccessful when the
  // kernel refused to unlock; no error for a ticket that held nothing.
  // Later calls do nothing.
  std::error_code release() noexcept;

 private:
  std::shared_ptr<RequestEntry> entry_;
};

// The steps the templates below share, in lock_manager.cpp.

// Validates the name, opens its pack (creating it) or connects to the
// cluster, and enters a pending request for it.
Ticket open_ticket(const std::shared_ptr<ManagerState>& state, std::string_view name, Mode mode,
                   std::error_code& ec) noexcept;
// errc::conflicting_options for options that exclude each other.
std::error_code check_options(const RequestOptions& options) noexcept;
// if_available or steal: grants the ticket now or never. if_available's
// "not now" is no error: the ticket is then released, ungranted.
// `tied_to_thread`: the calling thread holds it (re-entry check).
void take_now(Ticket& ticket, const RequestOptions& options, bool tied_to_thread,
              std::error_code& ec) noexcept;
// The synchronous request up to the callback: validated, granted (waiting
// if need be) or, for if_available, released ungranted.
Ticket begin_request(const std::shared_ptr<ManagerState>& state, std::string_view name,
                     const RequestOptions& options, std::error_code& ec) noexcept;
// Keeps a granted ticket under a new handle.
LockHandle keep_as_handle(ManagerState& state, Ticket&& ticket);
// The exception for `ec` about the lock `name`.
Error named_error(const ManagerState& state, std::string_view name, std::error_code ec);

template <typename T>
struct AwaitableTraits {
  static constexpr bool is_awaitable = false;
  using value_type = T;
};
template <typename T>
struct AwaitableTraits<asio::awaitable<T>> {
  static constexpr bool is_awaitable = true;
  using value_type = T;
};

template <typename Callback>
using CallbackResult = std::invoke_result_t<std::decay_t<Callback>&, std::optional<Lock>>;
// What async_request completes with: the callback's result, or the result
// of the awaitable it returns.
template <typename Callback>
using RequestValue = std::decay_t<typename AwaitableTraits<CallbackResult<Callback>>::value_type>;
template <typename Value>
struct RequestSignature {
  using type = void(std::error_code, std::exception_ptr, Value);
};
template <>
struct RequestSignature<void> {
  using type = void(std::error_code, std::exception_ptr);
};

// The synchronous request from the callback on: calls it holding the
// ticket's lock, releases (also when it throws), and gives the release's
// result to `on_released` before returning the callback's.
template <typename Callback, typename OnReleased>
CallbackResult<Callback> call_holding(Ticket& ticket, Callback& callback, OnReleased on_released) {
  using Result = CallbackResult<Callback>;
  static_assert(!AwaitableTraits<Result>::is_awaitable,
                "request() cannot run an awaitable: use async_request()");
  if constexpr (std::is_void_v<Result>) {
    std::invoke(callback, ticket.lock());
    on_released(ticket.release());
  } else {
    Result result = std::invoke(callback, ticket.lock());
    on_released(ticket.release());
    return result;
  }
}

// Steps shared by the operations below. `self` is an async_compose
// operation whose next step takes (std::error_code, PackLockHold) or
// (std::error_code, ClusterLockHold).

// Waits for the ticket's lock in the engine, then runs `self`.
template <typename Self>
void wait_in_engine(Self& self, const Ticket& ticket, const asio::any_io_executor& executor,
                    Mode mode, const Timeout& timeout) {
  // Waiting has no side effects (a cancelled cluster waiter's key and
  // lease are gone before it completes): any cancellation type may end it.
  self.reset_cancellation_state(asio::enable_total_cancellation());
  if (const ClusterLock* cluster = ticket.cluster_lock()) {
    cluster->async_acquire(executor, mode, timeout, std::move(self));
  } else {
    AcquireInitiation(ticket.pack(), executor, timeout)(std::move(self), mode);
  }
}

// Grants the ticket a hold an asynchronous wait got: not tied to a thread.
inline void grant(Ticket& ticket, PackLockHold hold) { ticket.grant(std::move(hold)); }
inline void grant(Ticket& ticket, ClusterLockHold hold) {
  ticket.grant(std::move(hold), /*tied_to_thread=*/false);
}

// Runs `self` with `ec` and no hold once the current step has returned:
// the handler must never run inside the initiating call.
template <typename Self>
void resume_soon(Self& self, std::error_code ec) {
  const auto executor = self.get_executor();
  asio::post(executor, [self = std::move(self), ec]() mutable { self(ec, PackLockHold()); });
}

// async_acquire's operation: open the ticket, wait in the engine, keep the
// hold under a handle.
class AsyncNamedAcquire {
 public:
  AsyncNamedAcquire(std::shared_ptr<ManagerState> state, std::string name, AcquireOptions options,
                    asio::any_io_executor executor)
      : state_(std::move(state)),
        name_(std::move(name)),
        options_(options),
        executor_(std::move(executor)) {}

  template <typename Self>
  void operator()(Self& self) {
    std::error_code ec;
    ticket_ = open_ticket(state_, name_, options_.mode, ec);
    if (ec) return resume_soon(self, ec);
    wait_in_engine(self, ticket_, executor_, options_.mode, options_.timeout);
  }

  template <typename Self, typename Hold>
    requires(std::is_same_v<Hold, PackLockHold> || std::is_same_v<Hold, ClusterLockHold>)
  void operator()(Self& self, std::error_code ec, Hold hold) {
    LockHandle handle;
    if (!ec) {
      grant(ticket_, std::move(hold));
      handle = keep_as_handle(*state_, std::move(ticket_));
    }
    ticket_ = Ticket();
    self.complete(ec, std::move(handle));
  }

 private:
  std::shared_ptr<ManagerState> state_;
  std::string name_;
  AcquireOptions options_;
  asio::any_io_executor executor_;
  Ticket ticket_;
};

// async_request's operation: open the ticket; wait in the engine (or take
// the lock now, or not, for steal and if_available); call the callback and
// co_spawn the awaitable it may return; release; complete.
template <typename Callback>
class AsyncRequest {
 public:
  using Value = RequestValue<Callback>;
  static constexpr bool kReturnsAwaitable = AwaitableTraits<CallbackResult<Callback>>::is_awaitable;

  AsyncRequest(std::shared_ptr<ManagerState> state, std::string name, RequestOptions options,
               asio::any_io_executor executor, Callback callback)
      : state_(std::move(state)),
        name_(std::move(name)),
        options_(options),
        executor_(std::move(executor)),
        callback_(std::move(callback)) {}

  // Starting.
  template <typename Self>
  void operator()(Self& self) {
    std::error_code ec = check_options(options_);
    if (!ec) ticket_ = open_ticket(state_, name_, options_.mode, ec);
    if (!ec && (options_.if_available || options_.steal)) {
      take_now(ticket_, options_, /*tied_to_thread=*/false, ec);
    }
    if (ec || options_.if_available || options_.steal) return resume_soon(self, ec);
    wait_in_engine(self, ticket_, executor_, options_.mode, options_.timeout);
  }

  // The request is decided: granted (a hold from the engine, or one
  // take_now() already granted), not available, or failed.
  template <typename Self, typename Hold>
    requires(std::is_same_v<Hold, PackLockHold> || std::is_same_v<Hold, ClusterLockHold>)
  void operator()(Self& self, std::error_code ec, Hold hold) {
    if (ec) return fail(self, ec);
    if (hold) grant(ticket_, std::move(hold));
    call_back(self);
  }

  // The awaitable the callback returned has finished.
  template <typename Self, typename... Result>
  void operator()(Self& self, std::exception_ptr thrown, Result&&... result) {
    finish(self, thrown, std::forward<Result>(result)...);
  }

 private:
  template <typename Self>
  void call_back(Self& self) {
    if constexpr (kReturnsAwaitable) {
      // co_spawn keeps the function it runs alive until it finishes, and
      // that function owns the callback: a callback that is a coroutine
      // lambda may use its captures until its awaitable finishes. The lock
      // is held until then. Once granted, a request is not cancelled (as in
      // Web Locks): the awaitable gets no cancellation slot.
      auto run = [callback = std::move(callback_),
                  lock = ticket_.lock()]() mutable -> asio::awaitable<Value> {
        co_return co_await std::invoke(callback, std::move(lock));
      };
      const auto executor = executor_;
      asio::co_spawn(executor, std::move(run),
                     asio::bind_cancellation_slot(asio::cancellation_slot(), std::move(self)));
    } else if constexpr (std::is_void_v<Value>) {
      std::exception_ptr thrown;
      try {
        std::invoke(callback_, ticket_.lock());
      } catch (...) {
        thrown = std::current_exception();
      }
      finish(self, thrown);
    } else {
      std::optional<Value> result;
      try {
        result.emplace(std::invoke(callback_, ticket_.lock()));
      } catch (...) {
        return finish(self, std::current_exception(), Value());
      }
      finish(self, nullptr, std::move(*result));
    }
  }

  // The lock could not be had: the callback did not run.
  template <typename Self>
  void fail(Self& self, std::error_code ec) {
    ticket_.release();
    if constexpr (std::is_void_v<Value>) {
      self.complete(ec, nullptr);
    } else {
      self.complete(ec, nullptr, Value());
    }
  }

  // Releases before completing: the error code says whether the lock was
  // lost while the callback ran (errc::hijacked), apart from what the
  // callback threw.
  template <typename Self, typename... Result>
  void finish(Self& self, std::exception_ptr thrown, Result&&... result) {
    const std::error_code released = ticket_.release();
    self.complete(released, thrown, std::forward<Result>(result)...);
  }

  std::shared_ptr<ManagerState> state_;
  std::string name_;
  RequestOptions options_;
  asio::any_io_executor executor_;
  Callback callback_;
  Ticket ticket_;
};

}  // namespace detail

}  // namespace packlock
