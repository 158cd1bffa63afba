#pragma once
// A held kernel lock: the locked sidecar descriptor plus what the lock table
// and the heartbeat service must be told when it goes.
//
// Right after acquiring, an exclusive hold writes its owner record and a
// shared one refreshes the mtime, so that no acquirer judges a fresh hold
// by an older holder's mtime; then the hold joins the heartbeat service. A
// hold through a read-only descriptor writes nothing: it is only watched
// for a hijack.
//
// A shared hold need not refresh the mtime on every acquisition, only keep
// it young enough: when the mtime seen at the ghost-lock check is at most
// (stale_after - heartbeat) / 2 old, it stays younger than
// (stale_after + heartbeat) / 2, less than stale_after, until the first
// beat one heartbeat later; otherwise futimens(2) refreshes it. Only on a
// local filesystem, whose clock is this host's. An exclusive hold's
// record, written with pwrite(2), refreshes the mtime anyway; its release
// overwrites the record with blanks while it still holds the lock, so that
// the last holder's command line does not stay in the pack.

#include <chrono>
#include <memory>
#include <string>
#include <system_error>

#include <packlock/mode.hpp>
#include <packlock/pack_lock.hpp>

#include "heartbeat.hpp"
#include "pack.hpp"
#include "sidecar.hpp"

namespace packlock::detail {

// Owned by one PackLockHold (or other face) at a time; release() may race
// with nothing else, so no member needs a lock (lost() and on_lost() are the
// heartbeat entry's, which is thread-safe).
class Hold final {
 public:
  // `sidecar` is locked in `mode`, and the pack's queue already counts
  // (mode, thread) among its holders.
  Hold(std::shared_ptr<const Pack> pack, Sidecar sidecar, Mode mode,
       ThreadToken thread) noexcept;
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;
  ~Hold() { release(); }

  // Leaves the heartbeat service (waiting for a beat in flight), unlocks
  // (LOCK_UN), which lets the kernel hand the lock to a waiter, and keeps
  // the unlocked descriptor in the pack for the next acquisition. In a child forked while the hold existed it only
  // closes its copy, leaving the parent's lock alone. Idempotent: later
  // calls return the first result.
  std::error_code release() noexcept;

  bool held() const noexcept { return static_cast<bool>(sidecar_.fd); }
  Mode mode() const noexcept { return mode_; }
  const Pack& pack() const noexcept { return *pack_; }
  const Sidecar& sidecar() const noexcept { return sidecar_; }
  std::chrono::system_clock::time_point acquired_at() const noexcept { return acquired_at_; }

  // True once the heartbeat found the sidecar path naming another inode.
  bool lost() const noexcept { return heartbeat_entry_.lost(); }
  void on_lost(std::function<void()> callback);

 private:
  std::shared_ptr<const Pack> pack_;
  Sidecar sidecar_;
  Mode mode_;
  ThreadToken thread_;
  std::chrono::system_clock::time_point acquired_at_;
  unsigned fork_generation_;
  std::error_code release_result_;
  HeartbeatService* heartbeat_;
  HeartbeatEntry heartbeat_entry_;
  std::size_t record_size_ = 0;  // of the owner record written, to clear at release
  std::string written_record_;   // on a network filesystem only

  void announce() noexcept;
  int write_record() noexcept;
  void clear_record() noexcept;
  bool record_still_ours() const noexcept;
  bool mtime_still_fresh() const noexcept;
};

// Wraps an engine hold into the public value every face returns.
struct HoldAccess {
  static PackLockHold wrap(std::unique_ptr<Hold> hold) noexcept { return PackLockHold(std::move(hold)); }
};

}  // namespace packlock::detail
