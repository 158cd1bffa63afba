#pragma once
// TryLock / TryRLock: the Go flock package's face of packlock (SPEC 2.2).
//
//   packlock::Root root = packlock::Root::open("/srv/store");
//   root.lock_file(".posixage.lock");             // the Go package's name
//   packlock::Context ctx;
//   ctx.with_timeout(5s).with_logger(my_logger);  // optional
//   packlock::UnlockFunc unlock = packlock::try_lock(ctx, root);
//   // ... work ...
//   unlock();  // or let the last copy go: that releases too
//
// The same engine as PackLock: the lock is flock(2) on the lock file, the
// wait is event-driven (woken by the holder's release, never by polling on
// a fixed period), an exclusive hold writes the owner record, every hold
// heartbeats on the process's one heartbeat thread, and a stale lock is
// recovered under the context's stale policy unless the context is done.

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include <packlock/error.hpp>
#include <packlock/mode.hpp>
#include <packlock/options.hpp>
#include <packlock/sidecar_name.hpp>

namespace packlock {

namespace detail {
class Cancellation;
struct RootDirectory;
}  // namespace detail

// An open directory, like Go's os.Root: every access to the lock file goes
// through its descriptor (openat, fstatat, unlinkat), so a later rename or
// replacement of the directory's path does not redirect the lock. Copies
// share the descriptor; the lock file name is each copy's own.
// Thread-safety: like any value; copies may be used from different threads.
class Root {
 public:
  // Not open: try_lock fails with errc::not_open as the cause.
  Root() noexcept;

  // Opens the existing directory `dir` (symlinks in the path are followed,
  // as os.OpenRoot does); it is not created. Errors: the OS error (ENOENT,
  // ENOTDIR, EACCES, ...); the throwing form throws packlock::Error.
  static Root open(const std::filesystem::path& dir);
  static Root open(const std::filesystem::path& dir, std::error_code& ec) noexcept;

  // The lock file's name in the directory, ".grex-lock" unless set. A name
  // that is empty, "." or "..", or holds a '/', makes try_lock fail with
  // std::errc::invalid_argument as the cause.
  Root& lock_file(std::string name);
  const std::string& lock_file() const noexcept { return lock_file_; }

  bool is_open() const noexcept { return static_cast<bool>(directory_); }
  // The directory as spelled to open().
  const std::filesystem::path& path() const noexcept;

 private:
  friend class TryLockAccess;
  std::shared_ptr<const detail::RootDirectory> directory_;
  std::string lock_file_ = kDefaultSidecarName;
};

// What a try_lock waits with: a cancellation, a deadline, and how its hold
// lives (logger, stale_after, heartbeat, stale policy). The defaults: never
// cancelled, no deadline, no logger (silent: packlock never writes to a
// default sink), the periods of resolved_timing(), StalePolicy::safe.
//
// Copies share the cancellation: cancel() on any copy cancels them all and
// wakes every try_lock waiting with one at once. The with_ setters change
// this context and return it, so that `Context().with_timeout(5s)` reads
// like Go's context.WithTimeout. Thread-safety: cancel() and cancelled()
// from any thread; the setters like any value.
class Context {
 public:
  Context();

  void cancel() noexcept;
  bool cancelled() const noexcept;
  // Why the context is done: errc::cancelled, errc::timeout once the
  // deadline has passed, or no error.
  std::error_code err() const noexcept;

  Context& with_deadline(std::chrono::steady_clock::time_point deadline) noexcept;
  Context& with_timeout(std::chrono::steady_clock::duration timeout) noexcept;
  Context& with_logger(Logger logger);
  Context& with_stale_after(std::chrono::nanoseconds stale_after) noexcept;
  Context& with_heartbeat(std::chrono::nanoseconds heartbeat) noexcept;
  Context& with_stale_policy(StalePolicy policy) noexcept;

  const std::optional<std::chrono::steady_clock::time_point>& deadline() const noexcept {
    return deadline_;
  }
  // logger, stale_after, heartbeat, stale_policy as set (the rest unused).
  const LockOptions& options() const noexcept { return options_; }

 private:
  friend class TryLockAccess;
  friend class ClusterLock;
  std::shared_ptr<detail::Cancellation> cancellation_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  LockOptions options_;
};

// Releases the lock a try_lock took. Copyable; the copies share the lock.
//
// Thread-safe and idempotent: only the first call releases; later calls,
// from any thread, return the first call's result. The call stops the
// hold's heartbeat (waiting for a beat in flight) before it touches the
// descriptor. Failure is errc::unlock_unsuccessful ("could not unlock
// store") with the OS error as cause(). Unlike Go, dropping the last copy
// without calling it still releases: nothing leaks.
class UnlockFunc {
 public:
  // Holds nothing: calling it gives errc::not_held.
  UnlockFunc() noexcept;

  std::error_code operator()() const noexcept;

  // True when it came from a successful try_lock.
  explicit operator bool() const noexcept { return static_cast<bool>(state_); }
  // The OS error behind an unlock_unsuccessful, once called.
  std::error_code cause() const noexcept;
  // True once the heartbeat found the lock file unlinked or replaced (the
  // logger hears `hijacked`): the lock no longer excludes anybody.
  bool lost() const noexcept;

 private:
  friend class TryLockAccess;
  struct State;
  std::shared_ptr<State> state_;
};

// Exclusive (try_lock) or shared (try_rlock) lock of `root`'s lock file,
// created if missing. Retries until acquired or `ctx` is done, woken by the
// holder's release; recovers a stale lock under ctx's policy, except once
// ctx is done. The first attempt is made even when ctx already is.
//
// Failure is errc::lock_unsuccessful ("store is locked") with the cause:
// errc::cancelled, errc::timeout (the deadline), errc::busy (re-entry by the
// calling thread; try_rlock after try_rlock succeeds, as Go's TryRLock
// does), errc::not_open, std::errc::invalid_argument (options or
// lock file name), or the OS error. The noexcept forms put the cause in
// `*cause` when given; the throwing forms throw packlock::Error whose
// cause() it is.
UnlockFunc try_lock(const Context& ctx, const Root& root);
UnlockFunc try_lock(const Context& ctx, const Root& root, std::error_code& ec,
                    std::error_code* cause = nullptr) noexcept;
UnlockFunc try_rlock(const Context& ctx, const Root& root);
UnlockFunc try_rlock(const Context& ctx, const Root& root, std::error_code& ec,
                     std::error_code* cause = nullptr) noexcept;

}  // namespace packlock
