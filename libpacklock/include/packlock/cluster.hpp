#pragma once
// Locks of a cluster: named locks kept in etcd, for jobs on several hosts.
// The lock of NAME is etcd's own mutex recipe under the prefix "NAME/", so
// `etcdctl lock NAME` and packlock exclude each other. A hold's lease is
// renewed by the process's heartbeat thread every `heartbeat`, its TTL is
// `stale_after`, and its fencing token (the key's create revision) rises
// strictly from one holder of the name to the next. See libpacklock(3).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>

#include <packlock/detail/cluster_initiation.hpp>
#include <packlock/mode.hpp>
#include <packlock/options.hpp>
#include <packlock/owner.hpp>
#include <packlock/pack_lock_hold.hpp>
#include <packlock/try_lock.hpp>

namespace packlock {

namespace detail {
class Cancellation;
class ClusterHold;
class EtcdClient;
struct ClusterLockRequest;
}  // namespace detail

class ClusterLock;

// Where the cluster is and how to speak to it, with etcdctl's meanings.
struct ClusterOptions {
  // "host:port", "http://host:port" or "https://host:port".
  std::vector<std::string> endpoints;
  // PEM files: the CA of the servers' certificates, the client's
  // certificate and its key. Any of them, or an https endpoint, means TLS.
  std::string cacert;
  std::string cert;
  std::string key;
  // etcd's authentication, when `user` is not empty.
  std::string user;
  std::string password;
  std::chrono::milliseconds dial_timeout{std::chrono::seconds(2)};
  // How long an authentication token is used before a fresh one is
  // fetched (in the background, while the old one still serves): well
  // within etcd's --auth-token-ttl (300 s by default), which a simple
  // token's idle time must not reach.
  std::chrono::milliseconds token_refresh{std::chrono::seconds(60)};

  // From the environment: PACKLOCK_ETCD_ENDPOINTS (else ETCDCTL_ENDPOINTS),
  // comma-separated; ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY; ETCDCTL_USER
  // ("name:password", or a name with ETCDCTL_PASSWORD).
  static ClusterOptions from_environment();
  // "a:2379,b:2379" as a list; empty items are left out.
  static std::vector<std::string> endpoint_list(std::string_view comma_separated);
};

// One key of a cluster lock: a holder or a waiter.
struct ClusterParty {
  std::string key;                   // "NAME/<lease id in hex>"
  Mode mode = Mode::exclusive;       // exclusive for a key without a record (etcdctl's)
  std::optional<OwnerRecord> owner;  // the key's value, when it is packlock's record
  std::int64_t fencing_token = 0;    // the key's create revision
  std::int64_t lease = 0;
};

// Who holds a cluster lock and who waits for it, as its keys say.
struct ClusterLockView {
  std::string name;
  // In the order of their keys: one exclusive holder, or the readers
  // before the first exclusive key. None: the lock is free.
  std::vector<ClusterParty> holders;
  // In the order they will be served.
  std::vector<ClusterParty> waiters;
};

// The cluster locks whose names start with `prefix` ("": all of them),
// sorted by name; keys that are not a lock's (no lease, or a last
// component that is not their lease id in hex) are left out. Reads only.
std::vector<ClusterLockView> observe_cluster(const ClusterOptions& cluster, std::string_view prefix);
std::vector<ClusterLockView> observe_cluster(const ClusterOptions& cluster, std::string_view prefix,
                                             std::error_code& ec) noexcept;
// The same over the connection of `connection` (any lock of the cluster),
// without connecting again; errc::not_open for an empty lock.
std::vector<ClusterLockView> observe_cluster(const ClusterLock& connection, std::string_view prefix,
                                             std::error_code& ec) noexcept;

// A held cluster lock. Move-only; the destructor releases.
class ClusterLockHold {
 public:
  ClusterLockHold() noexcept;
  ClusterLockHold(ClusterLockHold&&) noexcept;
  ClusterLockHold& operator=(ClusterLockHold&&) noexcept;
  ~ClusterLockHold();

  explicit operator bool() const noexcept { return static_cast<bool>(hold_); }
  // The key's create revision: greater than every earlier holder's.
  std::int64_t fencing_token() const noexcept;
  // "NAME/<lease id in hex>".
  const std::string& key() const noexcept;
  // True once the lease expired or the key was deleted.
  bool lost() const noexcept;
  // Runs once when the hold is found lost, on the heartbeat thread (at
  // once, here, if it already is).
  void on_lost(std::function<void()> callback);
  // Deletes the key, which releases the lock at once; the lease, without a
  // key, is kept for the next hold of this process (a lost hold's is
  // revoked). errc::hijacked when the hold
  // was lost. Releasing an empty hold does nothing.
  void release();
  void release(std::error_code& ec) noexcept;

 private:
  friend class ClusterLock;
  friend class detail::ClusterAcquireOperation;
  explicit ClusterLockHold(std::unique_ptr<detail::ClusterHold> hold) noexcept;
  std::unique_ptr<detail::ClusterHold> hold_;
};

class ClusterLock {
 public:
  ClusterLock() noexcept;
  ~ClusterLock();
  ClusterLock(const ClusterLock&);
  ClusterLock& operator=(const ClusterLock&);

  // Connects (within cluster.dial_timeout; errc::cluster_unavailable,
  // errc::cluster_refused) for the lock `name`. From `options` it takes
  // heartbeat and stale_after (the lease's TTL, in whole seconds), the
  // command and record_command.
  static ClusterLock open(const ClusterOptions& cluster, std::string_view name,
                          const LockOptions& options = LockOptions());
  static ClusterLock open(const ClusterOptions& cluster, std::string_view name,
                          const LockOptions& options, std::error_code& ec) noexcept;

  // errc::busy when held (or waited for) by another.
  ClusterLockHold try_acquire(Mode mode = Mode::exclusive) const;
  ClusterLockHold try_acquire(Mode mode, std::error_code& ec) const noexcept;
  // Takes the lock exclusive at once from whoever holds it or waits ahead,
  // as Web Locks' steal does: their keys are deleted, so each holder loses
  // it (on_lost; errc::hijacked at release) and each waiter queues again,
  // behind. errc::busy when a key ahead is not packlock's (etcdctl's),
  // whose holder would not notice, or when others keep stealing or queuing
  // ahead for a few rounds.
  ClusterLockHold steal() const;
  ClusterLockHold steal(std::error_code& ec) const noexcept;
  // Waits in line: errc::timeout after `timeout`.
  ClusterLockHold acquire(Mode mode = Mode::exclusive, Timeout timeout = std::nullopt) const;
  ClusterLockHold acquire(Mode mode, Timeout timeout, std::error_code& ec) const noexcept;
  // Waits in line until `context` is cancelled (errc::cancelled) or its
  // deadline passes (errc::timeout); of its options only the context's
  // cancellation and deadline count.
  ClusterLockHold acquire(Mode mode, const Context& context, std::error_code& ec) const noexcept;

  // acquire() as an Asio operation, for any completion token, with the
  // completion signature void(std::error_code, ClusterLockHold). No thread
  // waits for it: each round trip to etcd and the watch of the key before
  // this one complete on gRPC's threads, and the contention goes on on
  // `executor`. The handler runs exactly once, never inside this call, on
  // its associated executor. Its cancellation slot accepts terminal,
  // partial and total cancellation: errc::cancelled, unless the lock was
  // granted already; the timeout gives errc::timeout. Either way the
  // waiter's key and lease are gone before the handler runs.
  template <typename Executor, typename CompletionToken = asio::default_completion_token_t<Executor>>
  auto async_acquire(const Executor& executor, Mode mode,
                     CompletionToken&& token = asio::default_completion_token_t<Executor>()) const {
    return async_acquire(executor, mode, std::nullopt, std::forward<CompletionToken>(token));
  }

  template <typename Executor, typename CompletionToken = asio::default_completion_token_t<Executor>>
  auto async_acquire(const Executor& executor, Mode mode, Timeout timeout,
                     CompletionToken&& token = asio::default_completion_token_t<Executor>()) const {
    return asio::async_initiate<CompletionToken, void(std::error_code, ClusterLockHold)>(
        detail::ClusterAcquireInitiation<ClusterLock, ClusterLockHold>(
            *this, asio::any_io_executor(executor), timeout),
        token, mode);
  }

  const std::string& name() const noexcept { return name_; }
  // The lock `name` of the same cluster, over this lock's connection and
  // with its options: no second connection. An empty lock when this one is
  // empty; the name is not checked (open() checks it).
  ClusterLock sibling(std::string_view name) const;

  // Who holds the lock and who waits, read from the cluster now.
  ClusterLockView observe() const;
  ClusterLockView observe(std::error_code& ec) const noexcept;

 private:
  friend std::vector<ClusterLockView> observe_cluster(const ClusterLock& connection,
                                                      std::string_view prefix,
                                                      std::error_code& ec) noexcept;
  friend std::shared_ptr<detail::ClusterAcquireOperation> detail::make_cluster_acquire(
      const ClusterLock& lock, asio::any_io_executor executor, Mode mode,
      std::optional<std::chrono::steady_clock::time_point> deadline,
      detail::ClusterCompletion completion);

  detail::ClusterLockRequest request_for(Mode mode, bool may_wait,
                                         std::optional<std::chrono::steady_clock::time_point> deadline) const;
  ClusterLockHold take(Mode mode, bool may_wait, std::optional<std::chrono::steady_clock::time_point> deadline,
                       detail::Cancellation* cancel, std::error_code& ec) const noexcept;

  std::shared_ptr<const detail::EtcdClient> client_;
  std::string name_;
  LockOptions options_;
};

}  // namespace packlock
