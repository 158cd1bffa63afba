#pragma once
// Who holds and who waits for a pack, as the kernel's lock table shows it,
// and whether the lock is free, held or stale (SPEC section 1, "Diagnosis
// and recovery are separate"). Reads only: never creates the pack, the
// sidecar or anything else, and never takes the lock unless asked to
// (ObserveOptions::try_lock).

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <packlock/mode.hpp>
#include <packlock/owner.hpp>
#include <packlock/sidecar_name.hpp>

namespace packlock {

struct LockParty {
  pid_t pid = 0;
  Mode mode = Mode::exclusive;
  // A holder only: the pid the kernel names has exited (or names another
  // process now), and descriptors it passed on keep the lock: see
  // PackObservation::keepers.
  bool exited = false;
};

// free:  nobody holds the lock (as far as this host can see).
// held:  somebody does.
// stale: the holder wrote an owner record, so it promised to heartbeat, and
//        the sidecar's mtime is older than the stale period. A holder
//        without a record (a foreign flock(1), a shared holder) is held,
//        never stale. Diagnosis only: whether an acquirer may recover a
//        stale lock is its stale policy's business.
enum class PackState { free, held, stale };

constexpr std::string_view to_string(PackState state) noexcept {
  switch (state) {
    case PackState::free: return "free";
    case PackState::held: return "held";
    case PackState::stale: return "stale";
  }
  return "unknown";
}

struct ObserveOptions {
  std::string sidecar_name = kDefaultSidecarName;
  // The reader's stale period; a holder is judged by the larger of this and
  // the stale_after of its owner record.
  std::chrono::nanoseconds stale_after = std::chrono::seconds(30);
  // Also try a non-blocking exclusive flock(2) on a read-only descriptor,
  // released at once: it shows a lock the kernel table cannot (a holder on
  // another host of a network filesystem). It creates nothing, but a
  // concurrent non-blocking acquirer may find the lock busy meanwhile.
  bool try_lock = false;
};

struct PackObservation {
  bool sidecar_exists = false;
  std::vector<LockParty> holders;  // flock(2) locks on the sidecar, this host
  std::vector<LockParty> waiters;
  PackState state = PackState::free;
  // try_lock found the lock busy while the table shows no holder here.
  bool held_elsewhere = false;
  // When a holder has exited: the live processes whose descriptors keep its
  // lock (/proc/PID/fdinfo), a daemonised child for instance. The lock
  // stays held, no owner record is believed, and `safe` never robs it.
  std::vector<pid_t> keepers;
  // The owner record, believed: the lock is held and, on a local filesystem
  // (or for a record of this host), the record's pid holds it in the
  // record's mode as the kernel shows. Absent for a holder that wrote none.
  std::optional<OwnerRecord> owner;
  // The sidecar's record as read, believed or not (for display: an earlier
  // holder's record describes nobody). Read only when the lock is held or
  // try_lock is asked for: opening the sidecar would wake waiters that
  // watch it for a close.
  std::optional<OwnerRecord> record;
  // The sidecar's mtime, and its age against the filesystem's clock (for a
  // network filesystem the atime the pack directory gets when set to
  // UTIME_NOW; else this host's clock). A negative age is an mtime
  // in the future: `mtime_skewed`, which says nothing of liveness, and such
  // a lock is not reported stale.
  std::optional<std::chrono::system_clock::time_point> mtime;
  std::optional<std::chrono::nanoseconds> heartbeat_age;
  bool mtime_skewed = false;
  // The period the lock was judged by: max(reader's, owner record's).
  std::chrono::nanoseconds stale_period{};
  // Hard links of the sidecar: more than one means the pack shares its lock
  // with another directory (a copy made with `cp -al`).
  nlink_t links = 0;
  dev_t device = 0;
  ino_t inode = 0;
  // NFS, SMB, FUSE and the like: holders on other hosts are not listed.
  bool network_filesystem = false;
};

// /proc/locks lists the processes of this host only: a holder on another
// host of a network filesystem is not seen (unless try_lock). A waiter that
// dies, even by SIGKILL, leaves the list with the process. Errors: the OS
// error for the pack directory (ENOENT when it is missing),
// errc::not_a_regular_file for a refused sidecar. Thread-safe.
PackObservation observe(const std::filesystem::path& pack, const ObserveOptions& options,
                        std::error_code& ec);
PackObservation observe(const std::filesystem::path& pack, const ObserveOptions& options);
PackObservation observe(const std::filesystem::path& pack, std::chrono::nanoseconds stale_after,
                        std::error_code& ec, const std::string& sidecar_name = kDefaultSidecarName);
PackObservation observe(const std::filesystem::path& pack, std::error_code& ec,
                        const std::string& sidecar_name = kDefaultSidecarName);
PackObservation observe(const std::filesystem::path& pack,
                        const std::string& sidecar_name = kDefaultSidecarName);

}  // namespace packlock
