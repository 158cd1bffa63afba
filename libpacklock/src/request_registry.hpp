#pragma once
// Every named-lock request of this process, pending or granted, whichever
// LockManager made it.
//
// Why it exists: query() must report this process's requests exactly (the
// kernel shows one line per lock, not who asked for it), and a steal must
// reach every holder of the name in this process to take the lock from it.
// Managers of one lock directory in one process share the locks exactly as
// processes do, so the bookkeeping is process-wide, not per manager.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <packlock/cluster.hpp>
#include <packlock/mode.hpp>
#include <packlock/pack_lock.hpp>

#include "fork.hpp"
#include "lock_table.hpp"
#include "named_hold.hpp"
#include "pack.hpp"

namespace packlock::detail {

// The lock of a manager over etcd: the cluster lock and the cluster's
// endpoints, which tell apart locks of one name on two clusters.
struct ClusterTarget {
  ClusterLock lock;
  std::string cluster;

  bool same_lock(const ClusterTarget& other) const noexcept {
    return lock.name() == other.lock.name() && cluster == other.cluster;
  }
};

// One request. The description is immutable; the hold is guarded by
// mutex_, since the owner's release and a steal may race.
class RequestEntry final : public std::enable_shared_from_this<RequestEntry> {
 public:
  RequestEntry(std::string name, Mode mode, std::uint64_t client,
               std::shared_ptr<const Pack> pack) noexcept
      : name_(std::move(name)), mode_(mode), client_(client), pack_(std::move(pack)) {}
  RequestEntry(std::string name, Mode mode, std::uint64_t client, ClusterTarget cluster) noexcept
      : name_(std::move(name)), mode_(mode), client_(client), cluster_(std::move(cluster)) {}
  RequestEntry(const RequestEntry&) = delete;
  RequestEntry& operator=(const RequestEntry&) = delete;

  const std::string& name() const noexcept { return name_; }
  Mode mode() const noexcept { return mode_; }
  // The serial of the LockManager that made the request.
  std::uint64_t client() const noexcept { return client_; }
  // The lock: a pack's (null for a cluster's), or a cluster's (null for a
  // pack's).
  const std::shared_ptr<const Pack>& pack() const noexcept { return pack_; }
  const ClusterTarget* cluster() const noexcept { return cluster_ ? &*cluster_ : nullptr; }
  // When it was made, then when granted.
  std::chrono::system_clock::time_point since() const noexcept;

  bool granted() const noexcept { return granted_.load(std::memory_order_acquire); }
  // The thread that holds it (kNoThread: none, or not tied to a thread).
  ThreadToken thread() const noexcept { return thread_.load(std::memory_order_acquire); }
  // The hold's fencing token: a cluster lock's, once granted; else 0.
  std::int64_t fencing_token() const noexcept;
  // Stolen here, or the hold found hijacked (asked of the hold too: its
  // flag is raised before its on-lost callback runs).
  bool lost() const noexcept;

  // Holds `hold` from now on, for `thread`; its loss (a hijack, a cluster
  // key deleted or its lease expired) makes lost() true. The entry must be
  // owned by a std::shared_ptr.
  void grant(NamedHold hold, ThreadToken thread) noexcept;
  // A steal takes the lock: released now, and lost() from now on. Nothing
  // happens to a request that does not hold (any more).
  void revoke() noexcept;
  // The owner is done: releases what is still held. errc::hijacked when the
  // lock was taken away (stolen here, or hijacked), errc::unlock_unsuccessful when the kernel refused
  // to unlock (the descriptor is closed all the same, so the lock is gone).
  std::error_code release() noexcept;

 private:
  const std::string name_;
  const Mode mode_;
  const std::uint64_t client_;
  const std::shared_ptr<const Pack> pack_;
  const std::optional<ClusterTarget> cluster_;
  // Orders the owner's release and a steal's revoke, whole: a steal that
  // finds the request releasing waits until the lock is free.
  std::mutex release_mutex_;
  mutable std::mutex mutex_;  // guards hold_ and since_, briefly
  NamedHold hold_;
  std::chrono::system_clock::time_point since_ = std::chrono::system_clock::now();
  std::atomic<bool> granted_{false};
  std::atomic<ThreadToken> thread_{kNoThread};
  std::atomic<bool> lost_{false};
};

// All members take one mutex. Lock order: the registry, then an entry's
// mutex_; an entry's release_mutex_ is taken with neither held, and holds
// are released under it alone.
class RequestRegistry final {
 public:
  // Never destroyed: requests may end during exit.
  static RequestRegistry& instance();

  void add(std::shared_ptr<RequestEntry> entry);
  void remove(const RequestEntry& entry) noexcept;
  // The requests, in the order they were made.
  std::vector<std::shared_ptr<RequestEntry>> snapshot();
  // Revokes every granted request for the lock `pack` names (its queue in
  // the lock table).
  void revoke_holders(const Pack& pack) noexcept;
  // The same for a cluster lock: its holders here, whose keys a steal has
  // deleted, are told at once rather than when their watch hears of it.
  void revoke_holders(const ClusterTarget& cluster) noexcept;
  // How `thread` holds the cluster lock through requests here, if it does:
  // exclusive if any of them is (the re-entry check the engine makes for a
  // pack's lock).
  std::optional<Mode> held_by_thread(const ClusterTarget& cluster, ThreadToken thread);

 private:
  // In a forked child, the requests are the parent's.
  void forget_parent_after_fork() noexcept;
  void revoke_where(const std::function<bool(const RequestEntry&)>& matches) noexcept;

  RequestRegistry();

  std::mutex mutex_;  // free in a forked child (pthread_atfork)
  std::vector<std::shared_ptr<RequestEntry>> entries_;
  unsigned generation_ = fork_generation();
};

}  // namespace packlock::detail
