#pragma once
// PackLock: the lock of one pack directory, grex's face of packlock.
//
// The lock of a pack is flock(2) on the sidecar `<pack>/.grex-lock`, so it
// excludes util-linux flock(1), grex and the Go flock package on the same
// file. In one process, PackLocks of the same canonical pack (whatever path
// spelled it) share one queue: waiters are served in FIFO order and only the
// head of the queue contends at the kernel level.
//
// Thread-safety: a PackLock is immutable after open(); copies share the open
// pack, and any thread may call any member at any time.

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/dispatch.hpp>
#include <asio/executor_work_guard.hpp>

#include <packlock/error.hpp>
#include <packlock/mode.hpp>
#include <packlock/options.hpp>

namespace packlock {

namespace detail {
class Pack;
class Hold;
struct HoldAccess;
}  // namespace detail

// How long acquire() may wait; std::nullopt waits without limit. Measured on
// the monotonic clock, so changes of the wall clock do not affect it.
using Timeout = std::optional<std::chrono::steady_clock::duration>;

// One held lock. Move-only; the destructor releases and never throws.
// Thread-safety: like any value, one thread at a time.
class PackLockHold {
 public:
  PackLockHold() noexcept;
  PackLockHold(PackLockHold&&) noexcept;
  PackLockHold& operator=(PackLockHold&&) noexcept;
  ~PackLockHold();

  // True from acquisition until release().
  bool held() const noexcept;
  explicit operator bool() const noexcept { return held(); }

  // Releases the lock (LOCK_UN) and wakes waiters of other processes; the
  // unlocked descriptor is kept for the pack's next acquisition, unless a
  // fork has shared it since, and the sidecar stays. Idempotent: later
  // calls return the first call's result. A hold that never held anything
  // (default-constructed, moved-from) gives errc::not_held. A child forked
  // while the hold existed that releases its copy only closes it, leaving
  // this process's lock in place.
  std::error_code release() noexcept;

  // The mode, the canonical pack path and the time of acquisition. They stay
  // valid after release(); an empty hold reports exclusive, "" and epoch.
  Mode mode() const noexcept;
  const std::filesystem::path& pack() const noexcept;
  std::chrono::system_clock::time_point acquired_at() const noexcept;

  // Lost: the sidecar path no longer names the inode this hold locked (a
  // stale recovery, a steal, `rm`); the lock is no longer exclusion. The
  // heartbeat checks at every beat, and inotify reports an unlink or rename
  // on this host at once. `callback` runs once, on the heartbeat thread,
  // when the hold is found lost (the logger hears `hijacked` first); at
  // once, on the calling thread, when it already is. It may release the
  // hold. A later call replaces a callback that has not run. Holds in a
  // child forked while they existed never report.
  void on_lost(std::function<void()> callback);
  bool lost() const noexcept;

 private:
  friend struct detail::HoldAccess;  // the engine's faces make holds
  explicit PackLockHold(std::unique_ptr<detail::Hold> hold) noexcept;

  std::unique_ptr<detail::Hold> hold_;
};

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
    using HandlerType = std::decay_t<Handler>;
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto work = asio::make_work_guard(asio::get_associated_executor(handler, executor_));
    // std::function needs a copyable target; the handler may be move-only.
    auto shared = std::make_shared<HandlerType>(std::forward<Handler>(handler));
    AsyncCompletion complete = [shared, work, slot](std::error_code ec,
                                                    PackLockHold hold) mutable {
      if (slot.is_connected()) slot.clear();
      asio::dispatch(work.get_executor(),
                     [shared, ec, hold = std::move(hold)]() mutable {
                       (*shared)(ec, std::move(hold));
                     });
      work.reset();
    };
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

class PackLock {
 public:
  // A PackLock that is not open; every acquire reports errc::not_open.
  PackLock() noexcept;

  // Creates the pack directory (with its parents) and the sidecar if they are
  // missing (unless options.create is false) and opens them; does not lock.
  // Errors: the OS error (errno kept) for the directory or sidecar,
  // errc::not_a_regular_file when the sidecar is a symlink, directory, FIFO
  // or anything but a regular file (it is never followed or written),
  // std::errc::invalid_argument for options no holder could keep (heartbeat
  // not positive, stale_after not longer than heartbeat, a sidecar name that
  // is empty, "." or ".." or holds a '/'). Throws packlock::Error naming the
  // sidecar path.
  //
  // Every hold taken through the PackLock (try_acquire, acquire,
  // async_acquire) lives by `options`: an exclusive one writes the owner
  // record into the sidecar; all refresh the sidecar's mtime every
  // options.heartbeat on the process's one heartbeat thread, which also
  // detects a lost hold (on_lost()); a hold through a read-only descriptor
  // writes nothing and is only watched. An acquirer that finds the lock busy
  // with an mtime older than the stale period recovers it as
  // options.stale_policy allows (see options.hpp). Without options: the
  // defaults of LockOptions.
  static PackLock open(const std::filesystem::path& pack);
  static PackLock open(const std::filesystem::path& pack, std::error_code& ec) noexcept;
  static PackLock open(const std::filesystem::path& pack, const LockOptions& options);
  static PackLock open(const std::filesystem::path& pack, const LockOptions& options,
                       std::error_code& ec) noexcept;

  // Never waits. errc::busy when another process, another holder in this
  // process, a waiter queued before it, or the calling thread holds the pack
  // (but for a shared hold asked by a thread that holds it only shared,
  // which is granted at once).
  // A stale lock (see open()) is recovered and attempted once more.
  PackLockHold try_acquire(Mode mode = Mode::exclusive) const;
  PackLockHold try_acquire(Mode mode, std::error_code& ec) const noexcept;

  // Waits (blocking the calling thread) up to `timeout`: errc::timeout when
  // it passes. A thread that already holds this pack gets errc::busy at once
  // rather than a deadlock, unless it holds it shared and asks for shared:
  // that is granted at once, ahead of any queued waiter. The calling thread waits in flock(2): the
  // kernel hands it the lock on any tool's release (flock -u included) and
  // lists it in /proc/locks. It wakes early, through the wait signal
  // (LockOptions::wait_signal), at the deadline, when the lock could turn
  // stale, and when the sidecar is unlinked or replaced meanwhile.
  PackLockHold acquire(Mode mode = Mode::exclusive, Timeout timeout = std::nullopt) const;
  PackLockHold acquire(Mode mode, Timeout timeout, std::error_code& ec) const noexcept;

  // Asynchronous acquire, an Asio operation with the completion signature
  //   void(std::error_code, PackLockHold)
  // usable with any completion token (callbacks, asio::use_future,
  // asio::use_awaitable, asio::experimental::deferred). The handler runs
  // exactly once, never inside this call, on its associated executor.
  // It queues in FIFO order with every other waiter of this process for
  // the pack, blocking or not; when its turn comes, the pack's one wait
  // thread of this process (`packlock-wait`, shared by all asynchronous
  // waiters of the pack) waits in flock(2) for it, and the handler runs on
  // its executor. The thread ends when the pack has no asynchronous waiter
  // left.
  //
  // Cancellation: the handler's cancellation slot accepts terminal, partial
  // and total cancellation; the operation then completes with
  // errc::cancelled (== std::errc::operation_canceled) unless it already
  // holds the lock, in which case it completes with the hold. Once a
  // cancelled handler runs, no lock request of this process is pending in
  // the kernel for it, and nothing of packlock can still take the lock for
  // it: the wait thread's flock(2) has been interrupted (kernel_wait.hpp)
  // before the handler is posted.
  // The overload with a timeout completes with errc::timeout when it
  // passes. Holding is not tied to a thread, so an async hold is never
  // taken for re-entry.
  template <typename Executor, typename CompletionToken = asio::default_completion_token_t<Executor>>
  auto async_acquire(const Executor& executor, Mode mode,
                     CompletionToken&& token = asio::default_completion_token_t<Executor>()) const {
    return asio::async_initiate<CompletionToken, void(std::error_code, PackLockHold)>(
        detail::AcquireInitiation(pack_, asio::any_io_executor(executor), std::nullopt), token,
        mode);
  }

  template <typename Executor, typename CompletionToken = asio::default_completion_token_t<Executor>>
  auto async_acquire(const Executor& executor, Mode mode, std::chrono::steady_clock::duration timeout,
                     CompletionToken&& token = asio::default_completion_token_t<Executor>()) const {
    return asio::async_initiate<CompletionToken, void(std::error_code, PackLockHold)>(
        detail::AcquireInitiation(pack_, asio::any_io_executor(executor), timeout),
        token, mode);
  }

  bool is_open() const noexcept { return static_cast<bool>(pack_); }
  // The canonical path of the pack directory, and of its sidecar.
  const std::filesystem::path& pack() const noexcept;
  std::filesystem::path sidecar() const;

 private:
  explicit PackLock(std::shared_ptr<const detail::Pack> pack) noexcept;

  std::shared_ptr<const detail::Pack> pack_;
};

}  // namespace packlock
