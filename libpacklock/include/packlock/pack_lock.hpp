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
#include <memory>
#include <optional>
#include <system_error>

#include <packlock/error.hpp>
#include <packlock/mode.hpp>

namespace packlock {

namespace detail {
class Pack;
class Hold;
}  // namespace detail

// How long acquire() may wait; std::nullopt waits without limit. Measured on
// the monotonic clock, so changes of the wall clock do not affect it.
using Timeout = std::optional<std::chrono::steady_clock::duration>;

// One held lock. Move-only; the destructor releases and never throws.
// Thread-safety: like any value, one thread at a time.
class PackLockHold {
 public:
  PackLockHold() noexcept;
  explicit PackLockHold(std::unique_ptr<detail::Hold> hold) noexcept;
  PackLockHold(PackLockHold&&) noexcept;
  PackLockHold& operator=(PackLockHold&&) noexcept;
  ~PackLockHold();

  // True from acquisition until release().
  bool held() const noexcept;
  explicit operator bool() const noexcept { return held(); }

  // Releases the lock by closing its descriptor; the sidecar stays.
  // Idempotent: later calls return the first call's result. A hold that
  // never held anything (default-constructed, moved-from) gives
  // errc::not_held. A child forked while the hold existed that releases
  // its copy leaves this process's lock in place.
  std::error_code release() noexcept;

  // The mode, the canonical pack path and the time of acquisition. They stay
  // valid after release(); an empty hold reports exclusive, "" and epoch.
  Mode mode() const noexcept;
  const std::filesystem::path& pack() const noexcept;
  std::chrono::system_clock::time_point acquired_at() const noexcept;

 private:
  std::unique_ptr<detail::Hold> hold_;
};

class PackLock {
 public:
  // A PackLock that is not open; every acquire reports errc::not_open.
  PackLock() noexcept;

  // Creates the pack directory (with its parents) and the sidecar if they are
  // missing and opens them; does not lock. Errors: the OS error (errno kept)
  // for the directory or sidecar, errc::not_a_regular_file when the sidecar
  // is a symlink, directory, FIFO or anything but a regular file (it is never
  // followed or written). Throws packlock::Error naming the sidecar path.
  static PackLock open(const std::filesystem::path& pack);
  static PackLock open(const std::filesystem::path& pack, std::error_code& ec) noexcept;

  // Never waits. errc::busy when another process, another holder in this
  // process, a waiter queued before it, or the calling thread holds the pack.
  PackLockHold try_acquire(Mode mode = Mode::exclusive) const;
  PackLockHold try_acquire(Mode mode, std::error_code& ec) const noexcept;

  // Waits (blocking the calling thread) up to `timeout`: errc::timeout when
  // it passes. A thread that already holds this pack gets errc::busy at once
  // rather than a deadlock. Wakes on the holder's release (inotify on the
  // sidecar); a release the kernel does not report (`flock -u` by a foreign
  // holder that keeps its descriptor) is seen within 250 ms.
  PackLockHold acquire(Mode mode = Mode::exclusive, Timeout timeout = std::nullopt) const;
  PackLockHold acquire(Mode mode, Timeout timeout, std::error_code& ec) const noexcept;

  bool is_open() const noexcept { return static_cast<bool>(pack_); }
  // The canonical path of the pack directory, and of its sidecar.
  const std::filesystem::path& pack() const noexcept;
  std::filesystem::path sidecar() const;

 private:
  explicit PackLock(std::shared_ptr<const detail::Pack> pack) noexcept;

  std::shared_ptr<const detail::Pack> pack_;
};

}  // namespace packlock
