#pragma once
// A lock of a cluster: etcd's own mutex recipe, so that `etcdctl lock NAME`
// and packlock exclude each other on the same name.
//
//   key        <name>/<lease id in hex>, put with a lease of the holder's
//              own whose TTL is the lock's stale_after; the key's value is
//              the owner record's line (owner.hpp, its token the lease id),
//              "" for etcdctl's keys;
//   order      the create revisions of the keys under "<name>/": the lowest
//              holds, and each waiter waits for the deletion of the last
//              key created before its own (a watch, no polling, no herd);
//   shared     a reader waits only for earlier keys that are exclusive or
//              unknown (etcdctl's), so readers share and etcdctl still
//              excludes them all;
//   fencing    the key's create revision: it rises strictly from one
//              holder of a name to the next, across hosts;
//   release    the key is deleted, and the lease, without a key again,
//              is kept for the client's next hold (etcd_client.hpp,
//              SpareLeases); a hold that was lost, or a wait that ended,
//              revokes its lease, which deletes the key.
//
// While held, the process's heartbeat thread renews the lease every
// `heartbeat` (heartbeat.hpp, Beater). The hold is lost when etcd answers
// that the lease is gone, when no renewal has been answered for a whole
// TTL (the lease may have expired unseen), or when the key is deleted (a
// watch: `etcdctl del`, a steal). The loss is reported once, on the
// heartbeat thread, to on_lost().
//
// A wait that ends (deadline, error) revokes its lease before returning,
// so nothing can take the lock for it afterwards.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>

#include <packlock/mode.hpp>
#include <packlock/owner.hpp>

#include "contention.hpp"
#include "etcd_client.hpp"
#include "fork.hpp"
#include "heartbeat.hpp"

namespace packlock::detail {

struct ClusterLockRequest {
  std::string name;
  // The key's value, with the mode, the acquisition time and the lease id
  // (as its token) filled in; none: "", as etcdctl leaves it.
  std::optional<OwnerRecord> record;
  std::chrono::seconds ttl{30};
  std::chrono::nanoseconds heartbeat{std::chrono::seconds(10)};
  // The mode, whether to wait, the deadline and the cancellation.
  ContendRequest contend;
};

class ClusterHold final : private Beater {
 public:
  // Contends (contention.hpp) until the lock is held; errc::busy when the
  // request may not wait, errc::timeout, errc::cancelled, or the codes of
  // error_of() when etcd fails.
  static std::unique_ptr<ClusterHold> acquire(std::shared_ptr<const EtcdClient> client,
                                              const ClusterLockRequest& request,
                                              std::error_code& ec);

  // The pieces of an acquisition driven elsewhere (the asynchronous one,
  // cluster_async.cpp): a hold with no lease yet, a Contention for it
  // (cluster_contention.hpp), and take_over() once it is locked.
  class Contention;
  static std::unique_ptr<ClusterHold> create(std::shared_ptr<const EtcdClient> client);
  // Watches the key of a hold just locked; errc::hijacked when it was lost
  // during the contention.
  std::error_code take_over(const Contention& contention, const ClusterLockRequest& request);
  ~ClusterHold();
  ClusterHold(const ClusterHold&) = delete;
  ClusterHold& operator=(const ClusterHold&) = delete;

  const std::string& key() const noexcept { return key_; }
  std::int64_t lease() const noexcept { return lease_; }
  // The key's create revision.
  std::int64_t fencing_token() const noexcept { return revision_; }

  // The lease's TTL as etcd granted it (at least its minimum).
  std::chrono::seconds ttl() const noexcept { return ttl_; }

  bool lost() const noexcept { return lost_.load(std::memory_order_acquire); }
  // `callback` runs once when the hold is found lost, on the heartbeat
  // thread; at once, on this thread, if it already is.
  void on_lost(std::function<void()> callback);

  // Deletes the key and keeps the lease for the client's next hold; a hold
  // that was lost, or never locked, revokes its lease (the key goes with
  // it). errc::hijacked when the hold was lost. Later calls do nothing.
  std::error_code release() noexcept;
  // The same without waiting for etcd: `done` runs once, on a gRPC thread
  // (or at once, here, when there is no lease to revoke).
  void release_async(std::function<void(std::error_code)> done);

 private:
  struct KeyWatch;

  explicit ClusterHold(std::shared_ptr<const EtcdClient> client) : client_(std::move(client)) {}
  void keep_alive(const ClusterLockRequest& request);
  struct Restamp;
  struct StopKeepingAlive;
  void watch_key(std::optional<Restamp> restamp);
  void watch_key_from(std::int64_t revision);
  void look_at_key();
  void send_restamp();
  void forget_key_watch() noexcept;
  bool beat(std::function<void()>& then) noexcept override;
  void stop_keeping_alive() noexcept;

  std::shared_ptr<const EtcdClient> client_;
  std::int64_t lease_ = 0;  // none until granted
  std::chrono::seconds ttl_{0};
  std::string key_;
  std::int64_t revision_ = 0;
  std::int64_t seen_at_ = 0;  // the revision of the last look, which found the key
  bool released_ = false;
  const unsigned generation_ = fork_generation();  // fork_generation() when made
  bool locked_ = false;                   // the contention ended with the lock
  std::chrono::seconds asked_ttl_{0};     // the TTL the request asked for
  std::chrono::steady_clock::time_point granted_at_ = std::chrono::steady_clock::now();
  std::shared_ptr<HeartbeatService> heartbeat_;
  std::shared_ptr<KeyWatch> key_watch_;
  std::atomic<bool> key_deleted_{false};
  std::atomic<bool> key_unwatched_{false};  // the key's watch ended otherwise
  std::atomic<std::int64_t> watch_again_from_{0};  // a look found the key: watch from here
  std::atomic<bool> lost_{false};
  std::mutex callback_mutex_;
  std::function<void()> on_lost_;
  // The record's time of a lock granted after a wait, for the heartbeat
  // thread to write (restamp).
  struct Restamp {
    OwnerRecord record;
    Mode mode = Mode::exclusive;
    std::chrono::system_clock::time_point at;
  };
  std::atomic<bool> releasing_{false};  // the owner deletes the key
  std::mutex restamp_mutex_;
  std::optional<Restamp> restamp_;
};

// The key layout of the recipe.
// The prefix of a name's keys: "<name>/".
std::string key_prefix(const std::string& name);
// A lease id as the last component of its key: lowercase hex, no padding.
std::string lease_hex(std::int64_t lease);
// The end of the range of every key that starts with `prefix`.
std::string prefix_end(std::string prefix);
// A packlock reader's value says so; any other value (etcdctl's "", a
// record that cannot be read) excludes.
bool is_shared_value(const std::string& value);

}  // namespace packlock::detail
