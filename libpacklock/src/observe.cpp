#include <packlock/observe.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>

#include <packlock/error.hpp>

#include "owner_record.hpp"
#include "proc_locks.hpp"
#include "stale.hpp"
#include "unique_fd.hpp"

namespace packlock {
namespace {

using detail::KernelLock;
using detail::UniqueFd;

// The identity of `name` in `dir`, or false when it does not exist.
bool identity_of(int dir, const std::string& name, struct stat& st, std::error_code& ec) {
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return true;
  if (errno != ENOENT) ec.assign(errno, std::system_category());
  return false;
}

// Parties are processes: one that the table lists twice in one mode (two
// descriptors with shared locks, or a lock read twice, see
// kernel_locks_on) is one party.
void add_party(std::vector<LockParty>& parties, const LockParty& party) {
  const auto same = [&](const LockParty& p) {
    return p.pid == party.pid && p.mode == party.mode;
  };
  if (std::none_of(parties.begin(), parties.end(), same)) parties.push_back(party);
}

void add_sidecar_parties(const struct stat& st, PackObservation& seen, std::error_code& ec) {
  for (const KernelLock& lock : detail::kernel_locks_on(st.st_dev, st.st_ino, ec)) {
    if (lock.kind != KernelLock::Kind::flock) continue;
    const LockParty party{lock.pid, lock.write ? Mode::exclusive : Mode::shared};
    add_party(lock.blocked ? seen.waiters : seen.holders, party);
  }
}

// The kernel names the process that took a lock, which may have exited
// while a descriptor it passed on keeps the lock. Only then is every
// process's list of descriptors searched for the keepers.
void find_keepers(const struct stat& st, PackObservation& seen) {
  bool orphaned = false;
  for (LockParty& holder : seen.holders) {
    holder.exited = !detail::keeps_lock(holder.pid, st.st_dev, st.st_ino);
    orphaned |= holder.exited;
  }
  if (orphaned) seen.keepers = detail::processes_keeping_lock(st.st_dev, st.st_ino);
}

// A descriptor of the sidecar, read-only and never created, if it is still
// the inode `st` describes.
UniqueFd open_observed_sidecar(int dir, const std::string& name, const struct stat& st) {
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK));
  struct stat now {};
  if (fd && (::fstat(fd.get(), &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino)) {
    fd.reset();
  }
  return fd;
}

// True when a non-blocking exclusive flock fails: somebody holds the lock.
bool busy_when_tried(int fd) {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    ::flock(fd, LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

bool holds_in_mode(const std::vector<LockParty>& holders, const OwnerRecord& record) {
  return std::any_of(holders.begin(), holders.end(), [&](const LockParty& holder) {
    return holder.pid == record.pid && holder.mode == record.mode && !holder.exited;
  });
}

// SPEC section 1: a record is believed only while the lock is held and, on
// a local filesystem, only when its pid is among the kernel's holders.
bool believed(const OwnerRecord& record, const PackObservation& seen) {
  if (seen.holders.empty() && !seen.held_elsewhere) return false;
  const bool this_host = liveness_of(record) != OwnerLiveness::other_host;
  if (this_host) return holds_in_mode(seen.holders, record);
  // A holder on another host of a network filesystem is invisible here.
  return seen.network_filesystem && seen.holders.empty() && seen.held_elsewhere;
}

void judge(int dir, const std::string& sidecar_name, const ObserveOptions& options,
           PackObservation& seen) {
  seen.mtime = detail::mtime_at(dir, sidecar_name, seen.network_filesystem);
  if (!seen.mtime) return;
  const auto now = detail::filesystem_now(seen.network_filesystem, dir);
  const OwnerRecord* owner = seen.owner ? &*seen.owner : nullptr;
  const detail::Staleness staleness =
      detail::judge_staleness(*seen.mtime, now, options.stale_after, owner);
  seen.heartbeat_age = staleness.age;
  seen.mtime_skewed = staleness.skewed;
  seen.stale_period = staleness.period;
  if (seen.holders.empty() && !seen.held_elsewhere) return;
  seen.state = owner && staleness.stale ? PackState::stale : PackState::held;
}

}  // namespace

PackObservation observe(const std::filesystem::path& pack, const ObserveOptions& options,
                        std::error_code& ec) {
  ec.clear();
  PackObservation seen;
  seen.stale_period = options.stale_after;
  const UniqueFd dir = detail::open_pack_directory(pack, /*create=*/false, ec);
  if (ec) return seen;
  const std::string& name = options.sidecar_name;
  struct stat st {};
  if (!identity_of(dir.get(), name, st, ec)) return seen;
  if (!S_ISREG(st.st_mode)) {
    ec = errc::not_a_regular_file;
    return seen;
  }
  seen.sidecar_exists = true;
  seen.links = st.st_nlink;
  seen.device = st.st_dev;
  seen.inode = st.st_ino;
  seen.network_filesystem = detail::is_network_filesystem(dir.get());
  add_sidecar_parties(st, seen, ec);
  if (ec) return seen;
  find_keepers(st, seen);
  // A free lock's sidecar is left alone unless asked to try it.
  const bool look_inside = !seen.holders.empty() || options.try_lock;
  if (const UniqueFd sidecar = look_inside ? open_observed_sidecar(dir.get(), name, st) : UniqueFd()) {
    seen.record = read_owner_record(sidecar.get());
    if (options.try_lock && seen.holders.empty()) seen.held_elsewhere = busy_when_tried(sidecar.get());
  }
  if (seen.record && believed(*seen.record, seen)) seen.owner = seen.record;
  judge(dir.get(), name, options, seen);
  return seen;
}

PackObservation observe(const std::filesystem::path& pack, const ObserveOptions& options) {
  std::error_code ec;
  PackObservation seen = observe(pack, options, ec);
  if (ec) throw Error(ec, "observe", pack / options.sidecar_name);
  return seen;
}

PackObservation observe(const std::filesystem::path& pack, std::chrono::nanoseconds stale_after,
                        std::error_code& ec, const std::string& sidecar_name) {
  return observe(pack, ObserveOptions{sidecar_name, stale_after, false}, ec);
}

PackObservation observe(const std::filesystem::path& pack, std::error_code& ec,
                        const std::string& sidecar_name) {
  return observe(pack, ObserveOptions{sidecar_name, std::chrono::seconds(30), false}, ec);
}

PackObservation observe(const std::filesystem::path& pack, const std::string& sidecar_name) {
  return observe(pack, ObserveOptions{sidecar_name, std::chrono::seconds(30), false});
}

}  // namespace packlock
