#include "steal.hpp"

#include <algorithm>

#include <packlock/error.hpp>

#include "kernel_lock.hpp"
#include "owner_record.hpp"
#include "proc_locks.hpp"
#include "stale.hpp"

namespace packlock::detail {
namespace {

// The holder of `sidecar` will be told of a steal: its owner record names a
// live process of this host, the very one (by start time) that holds the
// lock in the kernel's table, and it holds alone.
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

}  // namespace

Sidecar seize_sidecar(const Pack& pack, Mode mode, std::error_code& ec) noexcept {
  ec.clear();
  Sidecar sidecar = pack.take_sidecar(ec);
  if (ec) return {};
  for (int round = 0;; ++round) {
    switch (attempt_kernel_lock(pack, sidecar, mode, ec)) {
      case Attempt::locked: return sidecar;
      case Attempt::failed: return {};
      case Attempt::busy: break;
    }
    // Only after an attempt: a sidecar we made free by unlinking its
    // predecessor is never left to nobody while we report busy.
    if (round == kStealRounds) break;
    int unlink_error = 0;
    const auto told = [&]() noexcept { return holder_will_be_told(sidecar); };
    const Recovery result =
        unlink_busy_sidecar(pack, sidecar, mode, RecoveryLockWait::yes, told, unlink_error);
    if (result == Recovery::locked) return sidecar;
    if (unlink_error != 0) {
      pack.keep_sidecar(std::move(sidecar));
      ec.assign(unlink_error, std::system_category());
      return {};
    }
    if (result == Recovery::none) break;
    sidecar = pack.open_sidecar(ec);
    if (ec) return {};
  }
  pack.keep_sidecar(std::move(sidecar));
  ec = errc::busy;
  return {};
}

}  // namespace packlock::detail
