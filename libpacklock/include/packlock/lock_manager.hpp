#pragma once
// LockManager: named locks, with two faces.
//
// - ext_lock's: acquire(name) returns a LockHandle{id, name} that
//   release(handle) gives back; try_acquire, is_locked, async_acquire.
// - the Web Locks API's: request(name, options, callback) holds the lock
//   while the callback runs (or while the awaitable it returns runs) and
//   releases it after; shared and exclusive modes, if_available, steal,
//   cancellation and a timeout; query() lists who holds and who waits.
//
// A name is a pack below the manager's lock directory: the lock "db/main" is
// flock(2) on `<lock_dir>/db/main/.grex-lock`. Named locks therefore use the
// one engine PackLock uses, exclude util-linux flock(1) and every other
// packlock face on the same sidecar, and show up in `packlock status`.
// Names nest as directories but not as locks: "db" and "db/main" are two
// independent locks.
//
// A name is 1 to 1024 bytes of [A-Za-z0-9._/-]: components of 1 to 255
// bytes (NAME_MAX) separated by single slashes, none starting with a dot.
// So "..", a leading or trailing "/", "a//b", ".hidden", "a/.grex-lock",
// NUL and every other byte give errc::invalid_name (== lock_errc::
// invalid_name), before anything is created. 1024 is a quarter of PATH_MAX:
// the rest is left for the lock directory, and the limit does not depend on
// it, so a name valid for one manager is valid for every manager.
//
// Errors are packlock::errc codes and OS errors (errno kept); each also
// compares equal to one packlock::lock_errc, ext_lock's numeric codes (see
// lock_errc.hpp). The throwing calls throw packlock::Error, naming the lock's
// sidecar path (or, for an invalid name, the name within the lock directory).
//
// Thread-safety: a LockManager is a handle: copies share one manager, and
// any thread may call any member at any time. Managers of the same lock
// directory in one process share its locks as processes do (a lock held
// through one excludes the others), and each sees the other's requests in
// query() and loses its locks to the other's steal.

#include <sys/types.h>

#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_state.hpp>
#include <asio/co_spawn.hpp>
#include <asio/compose.hpp>
#include <asio/post.hpp>

#include <packlock/error.hpp>
#include <packlock/lock_errc.hpp>
#include <packlock/mode.hpp>
#include <packlock/pack_lock.hpp>

namespace packlock {

namespace detail {
class ManagerState;
class RequestEntry;
class Ticket;
}  // namespace detail

// ---- ext_lock face -------------------------------------------------------

// A lock taken with acquire() or try_acquire(), for release(). `id` is
// unique per manager and never reused; `name` is the lock's name.
struct LockHandle {
  std::uint64_t id = 0;
  std::string name;

  friend bool operator==(const LockHandle&, const LockHandle&) = default;
};

struct AcquireOptions {
  Timeout timeout;              // how long acquire() may wait; none: no limit
  Mode mode = Mode::exclusive;  // ext_lock's locks are exclusive; shared too here
};

// ---- Web Locks face ------------------------------------------------------

// The lock a request's callback holds. Copies share the request.
class Lock {
 public:
  const std::string& name() const noexcept;
  Mode mode() const noexcept;
  // True once the lock was taken from this request: by a steal in this
  // process (at once), or through the hijack path (a steal in another
  // process, a stale recovery, `rm` of the sidecar: as soon as the heartbeat
  // service sees it, at once by inotify on this host). The callback runs on
  // without it, and the request then reports errc::hijacked
  // (== lock_errc::not_held). Thread-safe.
  bool lost() const noexcept;

 private:
  friend class detail::Ticket;
  explicit Lock(std::shared_ptr<const detail::RequestEntry> entry) noexcept
      : entry_(std::move(entry)) {}

  std::shared_ptr<const detail::RequestEntry> entry_;
};

struct RequestOptions {
  Mode mode = Mode::exclusive;
  // Grant the lock only if that can be done at once: the callback otherwise
  // runs with std::nullopt. Never waits.
  bool if_available = false;
  // Take the lock now: this process's holders of the name (through any
  // LockManager) lose it at once, an exclusive holder in another process of
  // this host loses it through the hijack path (the sidecar is unlinked and
  // a new one locked; its heartbeat service tells it), and the request is
  // granted ahead of every queued request. Never waits. Holders that would
  // not be told are not robbed, and the request then fails with
  // errc::busy: a PackLock of the same pack in this process, flock(1),
  // shared holders elsewhere, a holder on another host.
  bool steal = false;
  // Give up waiting after this long: errc::timeout. None: no limit.
  Timeout timeout;
};
// As in Web Locks, steal with if_available, steal with Mode::shared, and a
// timeout with steal or if_available (which never wait) are refused with
// errc::conflicting_options (== std::errc::invalid_argument).

// One request in query()'s snapshot. `client_id` names the LockManager
// that made it: "<pid>/<n>" for the n-th manager of process <pid> when that
// process is this one; for another process, which the kernel shows only as
// a whole, "<pid>".
struct LockInfo {
  std::string name;
  Mode mode = Mode::exclusive;
  std::string client_id;
  pid_t pid = 0;
};

struct LockManagerSnapshot {
  std::vector<LockInfo> held;
  std::vector<LockInfo> pending;
};

namespace detail {

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
  // The pack to acquire; null for an empty ticket.
  std::shared_ptr<const Pack> pack() const noexcept;
  void grant(PackLockHold hold) noexcept;
  // Releases what is held and leaves the bookkeeping. errc::hijacked when
  // the lock was taken away while held, errc::unlock_unsuccessful when the
  // kernel refused to unlock; no error for a ticket that held nothing.
  // Later calls do nothing.
  std::error_code release() noexcept;

 private:
  std::shared_ptr<RequestEntry> entry_;
};

// The steps the templates below share, in lock_manager.cpp.

// Validates the name, opens its pack (creating it) and enters a pending
// request for it.
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
  using type = void(std::exception_ptr, Value);
};
template <>
struct RequestSignature<void> {
  using type = void(std::exception_ptr);
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
// operation whose next step takes (std::error_code, PackLockHold).

// Waits for the ticket's lock in the engine, then runs `self`.
template <typename Self>
void wait_in_engine(Self& self, const Ticket& ticket, const asio::any_io_executor& executor,
                    Mode mode, const Timeout& timeout) {
  // Waiting has no side effects: any cancellation type may end it.
  self.reset_cancellation_state(asio::enable_total_cancellation());
  AcquireInitiation(ticket.pack(), executor, timeout)(std::move(self), mode);
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

  template <typename Self>
  void operator()(Self& self, std::error_code ec, PackLockHold hold) {
    LockHandle handle;
    if (!ec) {
      ticket_.grant(std::move(hold));
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
  template <typename Self>
  void operator()(Self& self, std::error_code ec, PackLockHold hold) {
    if (ec) return fail(self, std::make_exception_ptr(named_error(*state_, name_, ec)));
    if (hold) ticket_.grant(std::move(hold));
    call_back(self);
  }

  // The awaitable the callback returned has finished.
  template <typename Self, typename... Result>
  void operator()(Self& self, std::exception_ptr error, Result&&... result) {
    finish(self, error, std::forward<Result>(result)...);
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
      std::exception_ptr error;
      try {
        std::invoke(callback_, ticket_.lock());
      } catch (...) {
        error = std::current_exception();
      }
      finish(self, error);
    } else {
      std::optional<Value> result;
      try {
        result.emplace(std::invoke(callback_, ticket_.lock()));
      } catch (...) {
        return fail(self, std::current_exception());
      }
      finish(self, nullptr, std::move(*result));
    }
  }

  template <typename Self>
  void fail(Self& self, std::exception_ptr error) {
    if constexpr (std::is_void_v<Value>) {
      finish(self, error);
    } else {
      finish(self, error, Value());
    }
  }

  // Releases before completing; a lock lost on the way is an error unless
  // the callback already failed.
  template <typename Self, typename... Result>
  void finish(Self& self, std::exception_ptr error, Result&&... result) {
    if (const std::error_code released = ticket_.release(); released && !error) {
      error = std::make_exception_ptr(named_error(*state_, name_, released));
    }
    self.complete(error, std::forward<Result>(result)...);
  }

  std::shared_ptr<ManagerState> state_;
  std::string name_;
  RequestOptions options_;
  asio::any_io_executor executor_;
  Callback callback_;
  Ticket ticket_;
};

}  // namespace detail

class LockManager {
 public:
  // Names locks below `lock_dir` (made absolute now, so a later change of
  // the working directory does not move it). Creates nothing: the lock
  // directory and each lock's pack are created when first acquired.
  explicit LockManager(const std::filesystem::path& lock_dir);
  // The same, opening every lock's pack with `options`: heartbeat, stale
  // period and policy, logger, creation, and the sidecar name (so "db/main"
  // is then `<lock_dir>/db/main/<options.sidecar_name>`, which is_locked()
  // and query() read too). Invalid options (see PackLock::open) make every
  // request fail with std::errc::invalid_argument.
  LockManager(const std::filesystem::path& lock_dir, const LockOptions& options);

  const std::filesystem::path& lock_dir() const noexcept;
  // How query() names this manager's requests: "<pid>/<n>".
  std::string client_id() const;

  // ---- ext_lock face -----------------------------------------------------

  // Waits (blocking the calling thread) for the lock, up to
  // options.timeout: errc::timeout. A thread that already holds the lock
  // gets errc::busy at once rather than a deadlock. The handle holds the
  // lock until release() (from any thread) or the manager's end.
  LockHandle acquire(std::string_view name, const AcquireOptions& options = {}) const;
  LockHandle acquire(std::string_view name, const AcquireOptions& options,
                     std::error_code& ec) const noexcept;

  // Never waits: std::nullopt when the lock is busy (held, or requests of
  // this process queued for it).
  std::optional<LockHandle> try_acquire(std::string_view name, Mode mode = Mode::exclusive) const;
  std::optional<LockHandle> try_acquire(std::string_view name, Mode mode,
                                        std::error_code& ec) const noexcept;

  // Releases the handle's lock. errc::not_held for a handle this manager
  // does not hold (released already, or never its own); errc::hijacked
  // (== lock_errc::not_held) when a steal took the lock; and
  // errc::unlock_unsuccessful when the kernel refused (the lock is gone all
  // the same). The handle is forgotten in every case.
  void release(const LockHandle& handle) const;
  void release(const LockHandle& handle, std::error_code& ec) const noexcept;

  // True when any process holds the lock, shared or exclusive, as the
  // kernel's lock table shows it (holders on other hosts of a network file
  // system are not seen). Creates nothing: false when the pack or its
  // sidecar does not exist.
  bool is_locked(std::string_view name) const;
  bool is_locked(std::string_view name, std::error_code& ec) const noexcept;

  // acquire() as an Asio operation with the completion signature
  //   void(std::error_code, LockHandle)
  // for any completion token. The handler runs exactly once, never inside
  // this call. The wait parks no thread and is not tied to one. Its
  // cancellation slot accepts terminal, partial and total cancellation:
  // errc::cancelled (== std::errc::operation_canceled), unless the lock is
  // already granted. options.timeout: errc::timeout.
  template <typename Executor,
            typename CompletionToken = asio::default_completion_token_t<Executor>>
  auto async_acquire(const Executor& executor, std::string_view name, const AcquireOptions& options,
                     CompletionToken&& token = asio::default_completion_token_t<Executor>()) const {
    return asio::async_compose<CompletionToken, void(std::error_code, LockHandle)>(
        detail::AsyncNamedAcquire(state_, std::string(name), options,
                                  asio::any_io_executor(executor)),
        token, executor);
  }

  // ---- Web Locks face ----------------------------------------------------

  // Waits for the lock as `options` say, calls `callback(std::optional<Lock>)`
  // holding it, releases it, and returns what the callback returned. The
  // callback gets std::nullopt only when if_available could not grant the
  // lock at once. The lock is released also when the callback throws (the
  // exception propagates). Failures to get the lock throw packlock::Error
  // and do not call the callback; a lock taken away by a steal while the
  // callback ran throws errc::hijacked after it returns. The lock is held by
  // the calling thread: a request for it in the callback gets errc::busy
  // (or std::nullopt with if_available), not a deadlock.
  //
  // Shared requests are granted together; exclusive ones, and a shared one
  // behind an exclusive one, in FIFO order (in this process; between
  // processes the kernel decides). Cancellation: options.timeout; the
  // asynchronous form also takes a cancellation slot.
  template <typename Callback>
  detail::CallbackResult<Callback> request(std::string_view name, const RequestOptions& options,
                                           Callback&& callback) const {
    std::error_code ec;
    detail::Ticket ticket = detail::begin_request(state_, name, options, ec);
    if (ec) throw detail::named_error(*state_, name, ec);
    return detail::call_holding(ticket, callback, [&](std::error_code released) {
      if (released) throw detail::named_error(*state_, name, released);
    });
  }

  template <typename Callback>
  detail::CallbackResult<Callback> request(std::string_view name, Callback&& callback) const {
    return request(name, RequestOptions(), std::forward<Callback>(callback));
  }

  // As above, but errors go to `ec`: the result is then Result() when the
  // callback did not run, or the callback's result when the lock was lost
  // while it ran (errc::hijacked). The callback's own exceptions propagate.
  template <typename Callback>
    requires(std::is_void_v<detail::CallbackResult<Callback>> ||
             std::is_default_constructible_v<detail::CallbackResult<Callback>>)
  detail::CallbackResult<Callback> request(std::string_view name, const RequestOptions& options,
                                           Callback&& callback, std::error_code& ec) const {
    detail::Ticket ticket = detail::begin_request(state_, name, options, ec);
    if (ec) return detail::CallbackResult<Callback>();
    return detail::call_holding(ticket, callback, [&](std::error_code released) { ec = released; });
  }

  // request() as an Asio operation. `callback(std::optional<Lock>)` may
  // return a value or an asio::awaitable<T> (of asio::any_io_executor); the
  // lock is then held until the awaitable finishes (it runs on `executor`,
  // and the callback is kept alive until then, so a coroutine lambda may
  // use its captures). The completion
  // signature is
  //   void(std::exception_ptr, T)   or   void(std::exception_ptr)
  // for a callback (or awaitable) that returns T or void, as co_spawn's:
  // with asio::use_awaitable or asio::use_future the exception is rethrown.
  // The exception is the callback's own, or a packlock::Error when the lock
  // could not be had (the callback then does not run) or was lost while it
  // ran (errc::hijacked; T is then the callback's result). T must be
  // default-constructible, for the failures.
  //
  // The handler runs exactly once, never inside this call; the callback
  // runs on the handler's associated executor (by default `executor`).
  // The wait parks no thread and is not tied to one: the lock is the
  // request's, not a thread's. Cancellation, through the handler's slot
  // (terminal, partial, total) or options.timeout, ends a wait with
  // errc::cancelled or errc::timeout; once the lock is granted the callback
  // runs to its end, as in Web Locks.
  template <typename Executor, typename Callback,
            typename CompletionToken = asio::default_completion_token_t<Executor>>
  auto async_request(const Executor& executor, std::string_view name, const RequestOptions& options,
                     Callback&& callback,
                     CompletionToken&& token = asio::default_completion_token_t<Executor>()) const {
    using Operation = detail::AsyncRequest<std::decay_t<Callback>>;
    using Signature = typename detail::RequestSignature<typename Operation::Value>::type;
    return asio::async_compose<CompletionToken, Signature>(
        Operation(state_, std::string(name), options, asio::any_io_executor(executor),
                  std::forward<Callback>(callback)),
        token, executor);
  }

  // Held and pending requests for the locks below the lock directory: this
  // process's exactly, from its own bookkeeping (every LockManager of the
  // directory), in the order they were made; other processes' as the
  // kernel's lock table shows them (holders, packlock waiters and processes
  // blocked in flock(2); mode and pid, no finer client than the process).
  // This process's holds taken outside a LockManager (a PackLock of the
  // same directory) are not listed. Creates nothing; an absent lock
  // directory gives an empty snapshot.
  LockManagerSnapshot query() const;
  LockManagerSnapshot query(std::error_code& ec) const;

 private:
  std::shared_ptr<detail::ManagerState> state_;
};

}  // namespace packlock
