#include "cluster_query.hpp"

#include <algorithm>
#include <map>

#include "cluster_lock.hpp"

namespace packlock::detail {
namespace {

// The lock a key belongs to: its name, when the key is "<name>/<its lease
// in hex>" as the recipe puts it; anything else is some other use of etcd.
std::optional<std::string> lock_name_of(const mvccpb::KeyValue& kv) {
  if (kv.lease() == 0) return std::nullopt;
  const std::string& key = kv.key();
  const auto slash = key.rfind('/');
  if (slash == std::string::npos || slash == 0) return std::nullopt;
  if (key.compare(slash + 1, std::string::npos, lease_hex(kv.lease())) != 0) return std::nullopt;
  return key.substr(0, slash);
}

ClusterParty party_of(const mvccpb::KeyValue& kv) {
  ClusterParty party;
  party.key = kv.key();
  party.owner = parse_owner_record(kv.value());
  party.mode = party.owner ? party.owner->mode : Mode::exclusive;
  party.fencing_token = kv.create_revision();
  party.lease = kv.lease();
  return party;
}

// Splits a lock's line (in create-revision order) into holders and waiters.
void split_line(std::vector<ClusterParty> line, ClusterLockView& view) {
  std::size_t holding = line.empty() ? 0 : 1;
  if (!line.empty() && line.front().mode == Mode::shared) {
    while (holding < line.size() && line[holding].mode == Mode::shared) ++holding;
  }
  view.holders.assign(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(holding));
  view.waiters.assign(line.begin() + static_cast<std::ptrdiff_t>(holding), line.end());
}

}  // namespace

std::vector<ClusterLockView> query_locks(const EtcdClient& client, const std::string& prefix,
                                         std::error_code& ec) {
  etcdserverpb::RangeRequest request;
  // etcd takes no empty key: "\0" up to "\0" is every key.
  request.set_key(prefix.empty() ? std::string(1, '\0') : prefix);
  request.set_range_end(prefix_end(prefix));
  request.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  request.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  etcdserverpb::RangeResponse response;
  ec = call(client, client.kv(), &etcdserverpb::KV::Stub::Range, request, response);
  if (ec) return {};
  std::map<std::string, std::vector<ClusterParty>> lines;
  for (const auto& kv : response.kvs()) {
    if (auto name = lock_name_of(kv)) lines[*name].push_back(party_of(kv));
  }
  std::vector<ClusterLockView> views;
  views.reserve(lines.size());
  for (auto& [name, line] : lines) {
    ClusterLockView& view = views.emplace_back();
    view.name = name;
    split_line(std::move(line), view);
  }
  return views;
}

ClusterLockView query_lock(const EtcdClient& client, const std::string& name, std::error_code& ec) {
  // The name's prefix also holds the keys of longer names ("a/b" under
  // "a/"): only the name's own line is kept.
  std::vector<ClusterLockView> views = query_locks(client, key_prefix(name), ec);
  const auto own = std::find_if(views.begin(), views.end(),
                                [&](const ClusterLockView& view) { return view.name == name; });
  if (own != views.end()) return std::move(*own);
  ClusterLockView free;
  free.name = name;
  return free;
}

}  // namespace packlock::detail
