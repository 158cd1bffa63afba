#pragma once
// Stale locks (SPEC section 1): judging the age of a held sidecar, shared by
// diagnosis (observe()) and acquirers, and recovering a stale lock.
//
// Age is the sidecar's mtime measured against the filesystem's clock. On a
// local filesystem that is this kernel's realtime clock, which stamps the
// mtime. On a network filesystem the server stamps it, so "now" is the
// atime the pack directory gets when set to UTIME_NOW (the server applies
// it), and the sidecar's mtime is read with AT_STATX_FORCE_SYNC past the
// client's attribute cache. An mtime later than "now" is skewed: it says
// nothing about age. An acquirer then watches it instead: a skewed mtime
// that stays unchanged for a whole stale period, by this host's monotonic
// clock, is stale; one that changes is a live heartbeat.
//
// Recovery. An acquirer that finds the lock busy and stale, and whose policy
// allows it, unlinks the sidecar so that the next attempt creates a fresh
// one; the holder learns of it through the hijack path. Recoverers exclude
// each other with a non-blocking flock(2) on the pack directory itself,
// which lives as long as the pack and needs no file of its own; under it
// they check again that the path still names the inode judged stale, that
// it is still busy and stale (and, under `safe`, held by no process of this
// host), and only then unlink. So of many processes recovering one stale
// lock at once exactly one unlinks it, and only that inode; the others
// find the path replaced and contend for the new sidecar.
//
// A steal (contention.hpp) uses the same guarded unlink, with "the holder
// will be told" in place of "stale".

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

#include <packlock/mode.hpp>
#include <packlock/owner.hpp>

#include "sidecar.hpp"
#include "unique_fd.hpp"

namespace packlock::detail {

class Pack;

// NFS, SMB, AFS, Ceph, 9p, FUSE, cluster filesystems: holders on other hosts
// are invisible in /proc/locks, and mtimes come from another clock.
bool is_network_filesystem(int fd) noexcept;

// "Now" on the filesystem: the local realtime clock, or on a network
// filesystem the atime the directory `dir_fd` gets when set to UTIME_NOW;
// the local clock when that fails.
std::chrono::system_clock::time_point filesystem_now(bool network, int dir_fd) noexcept;

// The mtime of `fd`, revalidated on a network filesystem.
std::optional<std::chrono::system_clock::time_point> mtime_of(int fd, bool network) noexcept;
// The same for `name` in `dir_fd`, never following a symlink.
std::optional<std::chrono::system_clock::time_point> mtime_at(int dir_fd, const std::string& name,
                                                              bool network) noexcept;

struct Staleness {
  std::chrono::nanoseconds age{};     // filesystem now - mtime; negative when skewed
  std::chrono::nanoseconds period{};  // max(the reader's stale_after, the record's)
  bool skewed = false;                // mtime in the future (beyond a second)
  bool stale = false;                 // not skewed, and age > period
};

// The age of `mtime` against `now`, and whether it exceeds the larger of
// `stale_after` and the stale_after of `record` (a holder is never judged by
// a shorter period than it heartbeats for).
Staleness judge_staleness(std::chrono::system_clock::time_point mtime,
                          std::chrono::system_clock::time_point now,
                          std::chrono::nanoseconds stale_after, const OwnerRecord* record) noexcept;

// True when a process of this host holds a lock on the inode, as the
// kernel's lock table shows; also when the table cannot be read.
bool held_on_this_host(dev_t dev, ino_t ino) noexcept;

// What an acquirer does after a busy attempt.
enum class Recovery {
  none,    // not stale, protected by the policy, or someone else recovers: wait
  retry,   // the sidecar was unlinked or replaced: reopen it and attempt at once
  locked,  // the holder let go meanwhile: `sidecar` now holds the lock
};

// Unlinks the pack's sidecar from the directory `dir`: 0 or the errno.
int unlink_sidecar(const Pack& pack, int dir) noexcept;

// A non-blocking exclusive flock on the pack's directory as it is now,
// through a description of its own; empty when another recoverer has it.
// The recheck and the unlink below work in that directory.
UniqueFd take_recovery_lock(const Pack& pack) noexcept;

// Under the recovery lock `dir`, before any judgement: `retry` when the
// pack path, or the sidecar's name in `dir`, no longer names `sidecar`'s
// inode, `locked` when a non-blocking attempt in `mode` now succeeds,
// `none` while the lock is still busy.
Recovery recheck_under_recovery_lock(const Pack& pack, int dir, Sidecar& sidecar,
                                     Mode mode) noexcept;

// The one guarded unlink, for stale recovery and steal. Under the recovery
// lock, and once the recheck above finds the inode still named and busy,
// `still_to_unlink()` (noexcept) confirms the judgement made on that inode;
// only then is the sidecar unlinked (`retry`). `none` when the recovery
// lock is another's, when `still_to_unlink()` says no, or when the unlink
// fails (its errno in `unlink_error`).
template <typename StillToUnlink>
Recovery unlink_busy_sidecar(const Pack& pack, Sidecar& sidecar, Mode mode,
                             StillToUnlink&& still_to_unlink, int& unlink_error) noexcept {
  unlink_error = 0;
  const UniqueFd guard = take_recovery_lock(pack);
  // Busy: another recoverer is at it; its unlink wakes waiters (IN_ATTRIB).
  if (!guard) return Recovery::none;
  const Recovery recheck = recheck_under_recovery_lock(pack, guard.get(), sidecar, mode);
  if (recheck != Recovery::none || !still_to_unlink()) return recheck;
  unlink_error = unlink_sidecar(pack, guard.get());
  return unlink_error == 0 ? Recovery::retry : Recovery::none;
}

// The holder of `sidecar` will be told of a steal: its owner record names
// a live process of this host (same boot, same pid namespace, same start
// time) that holds the lock alone as the kernel's table shows, i.e. an
// exclusive packlock hold, which heartbeats and watches its sidecar. A
// flock(1) holder, shared holders, a holder on another host and a record
// left by a process that let go since would not learn of it.
bool holder_will_be_told(const Sidecar& sidecar) noexcept;

// The stale checks of one waiter across its attempts. Not thread-safe: one
// waiter owns it.
class StaleRecovery final {
 public:
  explicit StaleRecovery(const Pack& pack) noexcept : pack_(pack) {}

  // After a busy attempt on `sidecar` in `mode`. Cheap when the last check
  // showed the lock cannot be stale yet (no system call).
  Recovery after_busy(Sidecar& sidecar, Mode mode) noexcept;
  // When the lock could next turn stale, so that a waiter blocked in the
  // kernel wakes to judge it again; none before the first judgement.
  std::optional<std::chrono::steady_clock::time_point> next_check() const noexcept;

 private:
  std::optional<Staleness> judge(const Sidecar& sidecar, std::optional<OwnerRecord>& record) noexcept;
  Recovery recover(Sidecar& sidecar, Mode mode) noexcept;
  void report_protected(const Staleness& staleness) noexcept;
  void check_again_at(std::chrono::steady_clock::time_point at, bool share) noexcept;

  const Pack& pack_;
  ino_t sidecar_ino_ = 0;  // the inode of the last judgement
  std::chrono::steady_clock::time_point next_check_{};
  // A skewed mtime and since when (this host's monotonic clock) it stands.
  std::chrono::system_clock::time_point skewed_mtime_{};
  std::chrono::steady_clock::time_point skewed_since_{};
  bool reported_protected_ = false;
};

}  // namespace packlock::detail
