#pragma once
// PackLockHold, what acquiring a pack returns (pack_lock.hpp), and Timeout.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>

#include <packlock/mode.hpp>

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

}  // namespace packlock
