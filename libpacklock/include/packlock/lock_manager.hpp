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
// Over etcd (the second constructor), a name is a cluster lock below a
// prefix: "db/main" under the prefix "jobs/" is the ClusterLock
// "jobs/db/main" (<packlock/cluster.hpp>), held across hosts, excluding
// `etcdctl lock jobs/db/main` and `packlock run --etcd --key jobs/db/main`,
// with fencing tokens, and listed by `packlock status --etcd`. Both faces
// work as below, with the differences said at each call.
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
// sidecar path (or, for an invalid name, the name within the lock directory;
// over etcd, the cluster lock's name).
//
// Thread-safety: a LockManager is a handle: copies share one manager, and
// any thread may call any member at any time. Managers of the same lock
// directory in one process share its locks as processes do (a lock held
// through one excludes the others), and each sees the other's requests in
// query() and loses its locks to the other's steal.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <asio/async_result.hpp>
#include <asio/compose.hpp>

#include <packlock/cluster.hpp>
#include <packlock/detail/lock_manager_operations.hpp>
#include <packlock/lock_errc.hpp>
#include <packlock/mode.hpp>
#include <packlock/named_locks.hpp>
#include <packlock/pack_lock.hpp>

namespace packlock {

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
  // Names cluster locks "<prefix><name>" of the etcd cluster `cluster`,
  // held with the heartbeat, stale period (the lease's TTL), logger and
  // command of `options`. Connects at the first request, once for all of
  // them; a failure (errc::cluster_unavailable, errc::cluster_refused, both
  // == lock_errc::acquire_failed) is that request's, and the next tries
  // again.
  LockManager(const ClusterOptions& cluster, std::string_view prefix,
              const LockOptions& options = LockOptions());

  // Empty for a manager over etcd.
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
  // sidecar does not exist. Over etcd: when the cluster lock has a holder
  // on any host, as its keys say.
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
  // use its captures). The completion signature is
  //   void(std::error_code, std::exception_ptr, T)
  //   void(std::error_code, std::exception_ptr)
  // for a callback (or awaitable) that returns T or void. The error code
  // comes first, as in async_acquire: the lock could not be had (the
  // callback did not run), or it was lost while the callback ran
  // (errc::hijacked; T is then the callback's result). The exception is
  // the one the callback (or its awaitable) threw, after which the lock
  // was released; it is never dropped. With asio::use_awaitable or
  // asio::use_future an error code is thrown as std::system_error and the
  // rest is returned: (exception_ptr, T) as a tuple. T must be
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
  //
  // Over etcd: this process's requests as above (every LockManager of the
  // cluster, by its endpoints), then every other party of the locks below
  // the prefix on every host, from its key (one range read): host, pid,
  // command, mode, held for and fencing token from packlock's record; a key
  // without one (etcdctl's) is exclusive, pid 0, and named by its key.
  // Errors: those of the connection.
  LockManagerSnapshot query() const;
  LockManagerSnapshot query(std::error_code& ec) const;

 private:
  std::shared_ptr<detail::ManagerState> state_;
};

}  // namespace packlock
