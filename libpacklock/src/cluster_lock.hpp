#pragma once
// A lock of a cluster: etcd's own mutex recipe, so that `etcdctl lock NAME`
// and packlock exclude each other on the same name.
//
//   key        <name>/<lease id in hex>, put with a lease of the holder's
//              own whose TTL is the lock's stale_after; the key's value is
//              the owner record (JSON), "" for etcdctl's keys;
//   order      the create revisions of the keys under "<name>/": the lowest
//              holds, and each waiter waits for the deletion of the last
//              key created before its own (a watch, no polling, no herd);
//   shared     a reader waits only for earlier keys that are exclusive or
//              unknown (etcdctl's), so readers share and etcdctl still
//              excludes them all;
//   fencing    the key's create revision: it rises strictly from one
//              holder of a name to the next, across hosts;
//   release    the lease is revoked, which deletes the key at once.
//
// A wait that ends (deadline, error) revokes its lease before returning,
// so nothing can take the lock for it afterwards.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include <packlock/mode.hpp>

#include "etcd_client.hpp"

namespace packlock::detail {

struct ClusterLockRequest {
  std::string name;
  Mode mode = Mode::exclusive;
  std::string record;  // the key's value
  std::chrono::seconds ttl{30};
  std::optional<std::chrono::steady_clock::time_point> deadline;  // none: no limit
};

class ClusterHold final {
 public:
  // Waits until the lock is held, the deadline passes (errc::timeout) or
  // etcd fails (the codes of error_of()).
  static std::unique_ptr<ClusterHold> acquire(std::shared_ptr<const EtcdClient> client,
                                              const ClusterLockRequest& request,
                                              std::error_code& ec);
  ~ClusterHold();
  ClusterHold(const ClusterHold&) = delete;
  ClusterHold& operator=(const ClusterHold&) = delete;

  const std::string& key() const noexcept { return key_; }
  std::int64_t lease() const noexcept { return lease_; }
  // The key's create revision.
  std::int64_t fencing_token() const noexcept { return revision_; }

  // Revokes the lease (the key goes with it). Later calls do nothing.
  std::error_code release() noexcept;

 private:
  ClusterHold(std::shared_ptr<const EtcdClient> client, std::int64_t lease)
      : client_(std::move(client)), lease_(lease) {}
  std::error_code enter(const ClusterLockRequest& request);
  std::error_code wait_for_turn(const ClusterLockRequest& request);
  std::error_code still_mine();

  std::shared_ptr<const EtcdClient> client_;
  std::int64_t lease_ = 0;
  std::string key_;
  std::int64_t revision_ = 0;
  bool released_ = false;
};

// The prefix of a name's keys: "<name>/".
std::string key_prefix(const std::string& name);

}  // namespace packlock::detail
