#pragma once
// What one LockManager and its copies share.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <packlock/cluster.hpp>
#include <packlock/lock_manager.hpp>
#include <packlock/options.hpp>

#include "fork.hpp"
#include "pack.hpp"
#include "request_registry.hpp"

namespace packlock::detail {

// The state of one LockManager and its copies: where its locks are (a lock
// directory, or a cluster and a prefix) and the options every lock is
// opened with (fixed), its serial in this process (its client id), and the
// ext_lock handles it holds, guarded by mutex_.
class ManagerState final {
 public:
  ManagerState(std::filesystem::path lock_dir, LockOptions options)
      : lock_dir_(std::move(lock_dir)),
        options_(std::move(options)),
        client_(next_client()),
        generation_(fork_generation()) {}

  ManagerState(ClusterOptions cluster, std::string prefix, LockOptions options)
      : options_(std::move(options)),
        cluster_(Cluster{identity_of(cluster.endpoints), std::move(cluster), std::move(prefix)}),
        client_(next_client()),
        generation_(fork_generation()) {}

  // Empty for a manager over etcd.
  const std::filesystem::path& lock_dir() const noexcept { return lock_dir_; }
  bool over_cluster() const noexcept { return cluster_.has_value(); }
  // The cluster's endpoints, sorted and without their scheme: what tells
  // two clusters apart. (Managers that name one cluster by other
  // endpoints, or by a name and an address, are managers of two clusters
  // to each other.)
  const std::string& cluster_id() const noexcept { return cluster_->id; }
  const std::string& prefix() const noexcept { return cluster_->prefix; }
  // The cluster lock of `name`: "<prefix><name>".
  std::string cluster_name(std::string_view name) const { return cluster_->prefix + std::string(name); }

  // The cluster lock of `name`, over the manager's one connection.
  ClusterTarget cluster_target(std::string_view name, std::error_code& ec) {
    const ClusterLock connected = connection(ec);
    if (ec) return {};
    return ClusterTarget{connected.sibling(cluster_name(name)), cluster_id()};
  }

  // A lock over the manager's one connection, made at the first request (a
  // failed one is tried again at the next). gRPC's threads are not in a
  // forked child: there the connection is refused (errc::not_open), and
  // the parent's is left alone.
  ClusterLock connection(std::error_code& ec) {
    if (fork_generation() != generation_) {
      ec = errc::not_open;
      return {};
    }
    std::lock_guard lock(connection_mutex_);
    if (!connection_) {
      const std::string name = prefix().empty() ? std::string("-") : prefix();
      ClusterLock connected = ClusterLock::open(cluster_->options, name, options_, ec);
      if (ec) return {};
      connection_ = std::move(connected);
    }
    ec.clear();
    return *connection_;
  }
  const LockOptions& options() const noexcept { return options_; }
  std::uint64_t client() const noexcept { return client_; }

  LockHandle keep(Ticket&& ticket, std::string name, std::int64_t fencing_token) {
    std::lock_guard lock(mutex_);
    LockHandle handle{next_handle_++, std::move(name), fencing_token};
    handles_.emplace(handle.id, Held{handle.name, std::move(ticket)});
    return handle;
  }

  // The open pack of the lock `name` at `path`: opened at the first
  // request for the name, then kept while the manager lives, so that later
  // requests skip the open(2)s and the canonical path (and keep the
  // sidecar's idle descriptor). Beyond kOpenPacksKept names, the packs no
  // request uses any more are let go first. A forked child opens its own
  // and keeps none: the parent's belong to the parent (their queues,
  // heartbeat service and mutexes), and a parent thread may have held
  // packs_mutex_ at the fork.
  std::shared_ptr<const Pack> pack_for(std::string_view name, const std::filesystem::path& path,
                                       std::error_code& ec) {
    if (fork_generation() != generation_) return Pack::open(path, options_, ec);
    std::shared_ptr<const Pack> kept;
    {
      std::lock_guard lock(packs_mutex_);
      if (const auto it = packs_.find(name); it != packs_.end()) kept = it->second;
    }
    // A pack removed or renamed away since is opened (and created) anew.
    if (kept && kept->is_directory_at(path)) return kept;
    std::shared_ptr<const Pack> pack = Pack::open(path, options_, ec);
    if (ec) return nullptr;
    std::lock_guard lock(packs_mutex_);
    if (packs_.size() >= kOpenPacksKept) {
      std::erase_if(packs_, [](const auto& entry) { return entry.second.use_count() == 1; });
    }
    auto [it, added] = packs_.try_emplace(std::string(name), pack);
    // The kept one unless it is the stale one above; then the fresh one.
    if (!added && it->second == kept) it->second = pack;
    return it->second;
  }

  // The handle's ticket, no longer kept; an empty ticket when the handle is
  // not one this manager holds.
  Ticket give_back(const LockHandle& handle) noexcept {
    std::lock_guard lock(mutex_);
    const auto it = handles_.find(handle.id);
    if (it == handles_.end() || it->second.name != handle.name) return {};
    Ticket ticket = std::move(it->second.ticket);
    handles_.erase(it);
    return ticket;
  }

 private:
  struct Held {
    std::string name;
    Ticket ticket;
  };

  struct Cluster {
    std::string id;  // cluster_id()
    ClusterOptions options;
    std::string prefix;
  };

  static std::string identity_of(std::vector<std::string> endpoints) {
    for (std::string& endpoint : endpoints) {
      if (const auto scheme = endpoint.find("://"); scheme != std::string::npos) {
        endpoint.erase(0, scheme + 3);
      }
    }
    std::sort(endpoints.begin(), endpoints.end());
    std::string joined;
    for (const std::string& endpoint : endpoints) joined += (joined.empty() ? "" : ",") + endpoint;
    return joined;
  }

  static std::uint64_t next_client() noexcept {
    static std::atomic<std::uint64_t> last{0};
    return ++last;
  }

  const std::filesystem::path lock_dir_;
  const LockOptions options_;
  const std::optional<Cluster> cluster_;
  std::mutex connection_mutex_;
  std::optional<ClusterLock> connection_;
  const std::uint64_t client_;
  const unsigned generation_;  // fork_generation() when made
  // Each kept pack holds two descriptors (its directory, the idle sidecar).
  static constexpr std::size_t kOpenPacksKept = 32;
  struct NameHash : std::hash<std::string_view> {
    using is_transparent = void;
  };
  std::mutex packs_mutex_;
  std::unordered_map<std::string, std::shared_ptr<const Pack>, NameHash, std::equal_to<>> packs_;
  std::mutex mutex_;
  std::uint64_t next_handle_ = 1;
  std::unordered_map<std::uint64_t, Held> handles_;
};

}  // namespace packlock::detail
