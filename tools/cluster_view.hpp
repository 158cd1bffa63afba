#pragma once
// What probe --etcd and status --etcd say about a cluster lock, as text and
// as JSON, from the library's ClusterLockView (the lock's keys and their
// records).

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <packlock/cluster.hpp>

namespace packlock::cli {

// "NAME: held exclusive by 1234 (make install) on build1 for 3s, fencing
// token 57; 2 waiting", or "NAME: free".
std::string describe(const ClusterLockView& view);

// {"name", "state": "free"|"held", "mode", "holders": [party], "waiters":
// [party]}, a party being {"key", "mode", "fencing_token", "lease" (hex),
// "owner": {"pid", "host", "mode", "command", "acquired_at"} or null,
// "for_ms"} (held for, or waiting for; null without a record).
nlohmann::ordered_json to_json(const ClusterLockView& view);

// NAME STATE MODE HOLDERS WAITERS HELD-FOR TOKEN COMMAND, a line per lock.
std::string table_of(const std::vector<ClusterLockView>& views);

}  // namespace packlock::cli
