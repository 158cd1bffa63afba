#pragma once
// A held kernel lock: the locked sidecar descriptor plus what the lock table
// must be told when it goes.

#include <chrono>
#include <memory>
#include <system_error>

#include <packlock/mode.hpp>

#include "pack.hpp"
#include "sidecar.hpp"

namespace packlock::detail {

// Owned by one PackLockHold (or other face) at a time; release() may race
// with nothing else, so no member needs a lock.
class Hold final {
 public:
  // `sidecar` is locked in `mode`, and the pack's queue already counts
  // (mode, thread) among its holders.
  Hold(std::shared_ptr<const Pack> pack, Sidecar sidecar, Mode mode,
       ThreadToken thread) noexcept;
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;
  ~Hold() { release(); }

  // Unlocks (LOCK_UN), keeps the unlocked descriptor in the pack for the
  // next acquisition, and wakes waiters of other processes through the
  // pack's wake channel. In a child forked while the hold existed it only
  // closes its copy, leaving the parent's lock alone. Idempotent: later
  // calls return the first result.
  std::error_code release() noexcept;

  bool held() const noexcept { return static_cast<bool>(sidecar_.fd); }
  Mode mode() const noexcept { return mode_; }
  const Pack& pack() const noexcept { return *pack_; }
  const Sidecar& sidecar() const noexcept { return sidecar_; }
  std::chrono::system_clock::time_point acquired_at() const noexcept { return acquired_at_; }

 private:
  std::shared_ptr<const Pack> pack_;
  Sidecar sidecar_;
  Mode mode_;
  ThreadToken thread_;
  std::chrono::system_clock::time_point acquired_at_;
  unsigned fork_generation_;
  std::error_code release_result_;
};

}  // namespace packlock::detail
