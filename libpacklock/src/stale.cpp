#include "stale.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "owner_record.hpp"
#include "pack.hpp"
#include "proc_locks.hpp"

namespace packlock::detail {
namespace {

using SystemClock = std::chrono::system_clock;
using Steady = std::chrono::steady_clock;

// An mtime up to this far ahead of the filesystem's "now" is fresh, not
// skewed: timestamps are truncated differently by different filesystems.
constexpr auto kSkewTolerance = std::chrono::seconds(1);

std::optional<SystemClock::time_point> statx_mtime(int dir_fd, const char* name, int flags,
                                                   bool network) noexcept {
  struct statx st {};
  if (network) flags |= AT_STATX_FORCE_SYNC;
  if (::statx(dir_fd, name, flags, STATX_MTIME, &st) != 0 || !(st.stx_mask & STATX_MTIME)) {
    return std::nullopt;
  }
  return to_time_point(st.stx_mtime);
}

std::string seconds_text(std::chrono::nanoseconds d) {
  const double seconds = std::chrono::duration<double>(d).count();
  std::array<char, 32> text;
  std::snprintf(text.data(), text.size(), "%.3g s", seconds);
  return text.data();
}

}  // namespace

bool is_network_filesystem(int fd) noexcept {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0x6969:      // NFS
    case 0x517b:      // SMB
    case 0xff534d42:  // CIFS
    case 0xfe534d42:  // SMB2
    case 0x73757245:  // Coda
    case 0x5346414f:  // AFS
    case 0x6b414653:  // kAFS
    case 0x00c36400:  // Ceph
    case 0x01021997:  // 9p
    case 0x65735546:  // FUSE (sshfs, s3fs, ...)
    case 0x7461636f:  // OCFS2
    case 0x01161970:  // GFS2
    case 0x0bd00bd0:  // Lustre
    case 0x47504653:  // GPFS
      return true;
    default:
      return false;
  }
}

SystemClock::time_point filesystem_now(bool network, int dir_fd) noexcept {
  if (network && dir_fd >= 0) {
    // The atime: setting it changes nothing anyone relies on, and the
    // server stamps it with its own clock.
    const timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    struct statx st {};
    if (::futimens(dir_fd, times) == 0 &&
        ::statx(dir_fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_ATIME, &st) == 0 &&
        (st.stx_mask & STATX_ATIME)) {
      return to_time_point(st.stx_atime);
    }
  }
  return SystemClock::now();
}

std::optional<SystemClock::time_point> mtime_of(int fd, bool network) noexcept {
  return statx_mtime(fd, "", AT_EMPTY_PATH, network);
}

std::optional<SystemClock::time_point> mtime_at(int dir_fd, const std::string& name,
                                                bool network) noexcept {
  return statx_mtime(dir_fd, name.c_str(), AT_SYMLINK_NOFOLLOW, network);
}

Staleness judge_staleness(SystemClock::time_point mtime, SystemClock::time_point now,
                          std::chrono::nanoseconds stale_after, const OwnerRecord* record) noexcept {
  Staleness staleness;
  staleness.age = std::chrono::duration_cast<std::chrono::nanoseconds>(now - mtime);
  staleness.period = record ? std::max(stale_after, record->stale_after) : stale_after;
  staleness.skewed = staleness.age < -kSkewTolerance;
  staleness.stale = !staleness.skewed && staleness.age > staleness.period;
  return staleness;
}

bool held_on_this_host(dev_t dev, ino_t ino) noexcept try {
  std::error_code ec;
  const auto locks = kernel_locks_on(dev, ino, ec);
  if (ec) return true;  // cannot tell: alive
  return std::any_of(locks.begin(), locks.end(), [](const KernelLock& lock) { return !lock.blocked; });
} catch (...) {
  return true;
}

bool holder_will_be_told(const Sidecar& sidecar) noexcept try {
  const std::optional<OwnerRecord> record = read_owner_record(sidecar.fd.get());
  if (!record || record->mode != Mode::exclusive) return false;
  const std::shared_ptr<const ProcessFacts> facts = process_facts();
  if (!facts || record->boot_id != facts->boot_id ||
      record->pid_namespace != facts->pid_namespace) {
    return false;
  }
  if (process_start_time(record->pid) != record->start_time) return false;
  std::error_code ec;
  const std::vector<KernelLock> locks = kernel_locks_on(sidecar.dev, sidecar.ino, ec);
  if (ec) return false;
  const auto holds = [](const KernelLock& lock) { return !lock.blocked; };
  const auto holders = std::count_if(locks.begin(), locks.end(), holds);
  return holders == 1 && std::any_of(locks.begin(), locks.end(), [&](const KernelLock& lock) {
           return holds(lock) && lock.pid == record->pid;
         });
} catch (...) {
  return false;
}

std::optional<Staleness> StaleRecovery::judge(const Sidecar& sidecar,
                                              std::optional<OwnerRecord>& record) noexcept {
  const bool network = pack_.network();
  const auto mtime = mtime_of(sidecar.fd.get(), network);
  if (!mtime) return std::nullopt;
  const auto now = filesystem_now(network, pack_.dir_fd());
  const auto stale_after = pack_.options().stale_after;
  Staleness staleness = judge_staleness(*mtime, now, stale_after, nullptr);
  if (!staleness.skewed && !staleness.stale) return staleness;
  // Stale by our own period, or skewed: the holder's own period counts too.
  record = read_owner_record(sidecar.fd.get());
  staleness = judge_staleness(*mtime, now, stale_after, record ? &*record : nullptr);
  if (staleness.skewed) {
    const auto steady_now = Steady::now();
    if (*mtime != skewed_mtime_) {
      skewed_mtime_ = *mtime;
      skewed_since_ = steady_now;
    }
    staleness.stale = steady_now - skewed_since_ >= staleness.period;
  }
  return staleness;
}

std::optional<Steady::time_point> StaleRecovery::next_check() const noexcept {
  if (next_check_ == Steady::time_point{}) return std::nullopt;
  return next_check_;
}

void StaleRecovery::check_again_at(Steady::time_point at, bool share) noexcept {
  next_check_ = at;
  // Only "not stale before": each wait reports a protected holder itself.
  if (share) pack_.note_stale_check(at, sidecar_ino_);
}

Recovery StaleRecovery::after_busy(Sidecar& sidecar, Mode mode) noexcept {
  const auto now = Steady::now();
  // A judgement of this process that still stands spares the system calls.
  if (next_check_ == Steady::time_point{}) {
    if (const auto due = pack_.stale_check_due(sidecar.ino); due > now) next_check_ = due;
  }
  sidecar_ino_ = sidecar.ino;
  if (now < next_check_) return Recovery::none;
  std::optional<OwnerRecord> record;
  const auto staleness = judge(sidecar, record);
  if (!staleness) {
    check_again_at(now + pack_.options().stale_after, false);
    return Recovery::none;
  }
  if (!staleness->stale) {
    // Not stale before its period has passed since the mtime; a skewed
    // mtime is looked at again within a period.
    const auto left = staleness->skewed ? staleness->period : staleness->period - staleness->age;
    check_again_at(now + std::max(left, std::chrono::nanoseconds::zero()), true);
    return Recovery::none;
  }
  if (pack_.options().stale_policy == StalePolicy::safe && held_on_this_host(sidecar.dev, sidecar.ino)) {
    report_protected(*staleness);
    check_again_at(now + staleness->period, false);
    return Recovery::none;
  }
  return recover(sidecar, mode);
}

void StaleRecovery::report_protected(const Staleness& staleness) noexcept {
  if (reported_protected_) return;
  reported_protected_ = true;
  pack_.log(LogEventKind::stale_not_recovered,
            [&] {
              return "lock looks stale (mtime " + seconds_text(staleness.age) + " old, stale after " +
                     seconds_text(staleness.period) +
                     ") but a process of this host holds it: not recovering (policy safe)";
            },
            {});
}

UniqueFd take_recovery_lock(const Pack& pack) noexcept {
  // A description of its own: flock(2) then excludes the threads of this
  // process from each other too.
  UniqueFd fd = pack.open_directory_now();
  if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return {};
  return fd;
}

int unlink_sidecar(const Pack& pack, int dir) noexcept {
  return ::unlinkat(dir, pack.sidecar_name().c_str(), 0) == 0 ? 0 : errno;
}

Recovery recheck_under_recovery_lock(const Pack& pack, int dir, Sidecar& sidecar,
                                     Mode mode) noexcept {
  // The unlink is by name in `dir`: that name must lead to the inode judged,
  // whatever happened to the pack path since `dir` was opened. For a pack
  // that is its directory, `dir` is that directory and the first check
  // already asked it.
  if (!pack.path_names(sidecar, mode) ||
      (pack.follows_path() &&
       !path_names_inode(dir, pack.sidecar_name(), sidecar.dev, sidecar.ino))) {
    return Recovery::retry;
  }
  const int operation = (mode == Mode::exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB;
  if (::flock(sidecar.fd.get(), operation) == 0) {
    if (pack.path_names(sidecar, mode)) return Recovery::locked;
    ::flock(sidecar.fd.get(), LOCK_UN);
    return Recovery::retry;
  }
  return Recovery::none;
}

Recovery StaleRecovery::recover(Sidecar& sidecar, Mode mode) noexcept {
  std::optional<OwnerRecord> record;
  std::optional<Staleness> staleness;
  const auto still_stale = [&]() noexcept {
    staleness = judge(sidecar, record);
    if (!staleness || !staleness->stale) return false;
    return pack_.options().stale_policy != StalePolicy::safe ||
           !held_on_this_host(sidecar.dev, sidecar.ino);
  };
  int unlink_error = 0;
  const Recovery result =
      unlink_busy_sidecar(pack_, sidecar, mode, still_stale, unlink_error);
  if (unlink_error != 0) {
    check_again_at(Steady::now() + staleness->period, false);
    pack_.log(LogEventKind::stale_not_recovered,
              [] { return std::string("lock is stale but its sidecar could not be unlinked"); },
              {unlink_error, std::system_category()});
    return Recovery::none;
  }
  if (result == Recovery::none) {
    // Another recoverer is at it (its unlink wakes waiters), or the lock is
    // no longer stale: look again within a fraction of the period.
    check_again_at(Steady::now() + pack_.options().stale_after / 4, false);
  }
  // Nothing was unlinked by us unless the judgement was made and held.
  if (result != Recovery::retry || !staleness || !staleness->stale) return result;
  pack_.log(LogEventKind::stale_recovered,
            [&] {
              std::string text = "recovered a stale lock: inode " + std::to_string(sidecar.ino) +
                                 ", mtime " + seconds_text(staleness->age) + " old, stale after " +
                                 seconds_text(staleness->period);
              if (record) {
                text += ", holder pid " + std::to_string(record->pid) + " on " + record->host;
              }
              return text + " (policy " + std::string(to_string(pack_.options().stale_policy)) + ")";
            },
            {});
  return Recovery::retry;
}

}  // namespace packlock::detail
