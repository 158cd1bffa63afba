#pragma once
// Who holds the locks of a cluster and who waits for them, read from their
// keys (cluster_lock.hpp): one range request, nothing written.
//
// A lock's keys in create-revision order are its line. The first holds;
// when it is a reader, so does every reader before the first exclusive
// key, since a reader waits only for exclusive (or unknown) keys before it.
// The rest wait, in the order they will be served.

#include <string>
#include <system_error>
#include <vector>

#include <packlock/cluster.hpp>

#include "etcd_client.hpp"

namespace packlock::detail {

// The locks with a key under `prefix` ("" for every key), sorted by name.
std::vector<ClusterLockView> query_locks(const EtcdClient& client, const std::string& prefix,
                                         std::error_code& ec);

// The lock `name` alone (its view has no parties when it is free).
ClusterLockView query_lock(const EtcdClient& client, const std::string& name, std::error_code& ec);

}  // namespace packlock::detail
