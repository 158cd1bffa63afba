// packlock's side of cluster_run.hpp: it carries no cluster backend, and
// hands a cluster run over to packlock-etcd before it gets here.

#include <stdexcept>

#include <packlock/error.hpp>

#include "cluster_run.hpp"

namespace packlock::cli {

bool carries_cluster_backend() noexcept { return false; }

std::unique_ptr<ClusterRunHold> take_cluster_lock(const ClusterSettings&, const std::string&, Mode,
                                                  bool, const Context&, const LockSettings&,
                                                  std::string, std::error_code& ec) {
  ec = errc::cluster_unavailable;
  return nullptr;
}

std::unique_ptr<ClusterObserver> observe_cluster(const ClusterSettings&) {
  throw std::runtime_error("this command carries no cluster backend: use packlock-etcd");
}

}  // namespace packlock::cli
