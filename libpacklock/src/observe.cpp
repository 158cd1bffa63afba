#include <packlock/observe.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <packlock/error.hpp>

#include "proc_locks.hpp"
#include "unique_fd.hpp"
#include "waiter_registry.hpp"

namespace packlock {
namespace {

using detail::KernelLock;

// The identity of `name` in `dir`, or false when it does not exist.
bool identity_of(int dir, const std::string& name, struct stat& st, std::error_code& ec) {
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return true;
  if (errno != ENOENT) ec.assign(errno, std::system_category());
  return false;
}

void add_sidecar_parties(const struct stat& st, PackObservation& seen, std::error_code& ec) {
  for (const KernelLock& lock : detail::kernel_locks_on(st.st_dev, st.st_ino, ec)) {
    if (lock.kind != KernelLock::Kind::flock) continue;
    const LockParty party{lock.pid, lock.write ? Mode::exclusive : Mode::shared, false};
    (lock.blocked ? seen.waiters : seen.holders).push_back(party);
  }
}

void add_registered_waiters(const struct stat& st, PackObservation& seen, std::error_code& ec) {
  for (const KernelLock& lock : detail::kernel_locks_on(st.st_dev, st.st_ino, ec)) {
    if (lock.kind != KernelLock::Kind::posix || lock.blocked || lock.write) continue;
    // The kernel merges one process's adjacent ranges: 0-1 is both modes.
    const auto covers = [&](long long byte) {
      return lock.start <= byte && (lock.end < 0 || lock.end >= byte);
    };
    if (covers(0)) seen.waiters.push_back({lock.pid, Mode::exclusive, true});
    if (covers(1)) seen.waiters.push_back({lock.pid, Mode::shared, true});
  }
}

}  // namespace

PackObservation observe(const std::filesystem::path& pack, std::error_code& ec,
                        const std::string& sidecar_name) {
  ec.clear();
  PackObservation seen;
  const detail::UniqueFd dir(::open(pack.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    ec.assign(errno, std::system_category());
    return seen;
  }
  struct stat st {};
  if (!identity_of(dir.get(), sidecar_name, st, ec)) return seen;
  if (!S_ISREG(st.st_mode)) {
    ec = errc::not_a_regular_file;
    return seen;
  }
  seen.sidecar_exists = true;
  add_sidecar_parties(st, seen, ec);
  if (ec) return seen;
  if (identity_of(dir.get(), sidecar_name + detail::kWaitersSuffix, st, ec) && S_ISREG(st.st_mode)) {
    add_registered_waiters(st, seen, ec);
  }
  return seen;
}

PackObservation observe(const std::filesystem::path& pack, const std::string& sidecar_name) {
  std::error_code ec;
  PackObservation seen = observe(pack, ec, sidecar_name);
  if (ec) throw Error(ec, "observe", pack / sidecar_name);
  return seen;
}

}  // namespace packlock
