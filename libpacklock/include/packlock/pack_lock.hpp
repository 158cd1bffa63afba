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

#include <chrono>
#include <filesystem>
#include <system_error>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>

#include <packlock/detail/acquire_initiation.hpp>
#include <packlock/error.hpp>
#include <packlock/mode.hpp>
#include <packlock/options.hpp>
#include <packlock/pack_lock_hold.hpp>

namespace packlock {

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
