#pragma once
// The command's cluster side: `packlock run --etcd`, the cluster lock a run
// takes after its pack's, and `probe --etcd` / `status --etcd`, which read
// a cluster's locks. The local command carries no cluster code (it stays linked without
// gRPC): given --etcd, or PACKLOCK_ETCD_ENDPOINTS, it hands the whole
// command line to packlock-etcd, the same command linked with the cluster
// backend, which lives beside it or in the library directory's
// libexec/packlock.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <boost/program_options.hpp>

#include <packlock/cluster.hpp>
#include <packlock/mode.hpp>
#include <packlock/try_lock.hpp>

#include "options.hpp"

namespace packlock::cli {

// The cluster settings of a run, with etcdctl's names where they exist.
struct ClusterSettings {
  std::string endpoints;  // --etcd, else PACKLOCK_ETCD_ENDPOINTS
  std::string key;        // --key: the lock's name; default: the pack's canonical path
  std::string cacert, cert, key_file;
  std::string user;  // NAME or NAME:PASSWORD
  std::string password;
  Duration dial_timeout;

  bool wanted() const noexcept { return !endpoints.empty(); }
};

// --etcd (described by `etcd_help`), --cacert, --cert, --key-file,
// --user, --password, --dial-timeout.
void add_cluster_options(boost::program_options::options_description& options,
                         ClusterSettings& settings, const char* etcd_help);
// run's --key.
void add_cluster_key_option(boost::program_options::options_description& options,
                            ClusterSettings& settings);
// The environment's endpoints when --etcd was not given.
void complete_cluster_settings(ClusterSettings& settings);

// A held cluster lock, as run uses it.
class ClusterRunHold {
 public:
  virtual ~ClusterRunHold() = default;
  virtual std::int64_t fencing_token() const = 0;
  virtual const std::string& key() const = 0;
  virtual void on_lost(std::function<void()> callback) = 0;
  virtual std::error_code release() = 0;
};

// Takes the cluster lock `name` in `mode`: at once (`may_wait` false:
// errc::busy), or waiting until `context` is cancelled or past its
// deadline. `command` goes into the record.
std::unique_ptr<ClusterRunHold> take_cluster_lock(const ClusterSettings& settings,
                                                  const std::string& name, Mode mode,
                                                  bool may_wait, const Context& context,
                                                  const LockSettings& lock, std::string command,
                                                  std::error_code& ec);

// Reads a cluster's locks for probe and status. The connection to a lock
// is kept for the command's later reads of it (probe --wait).
class ClusterObserver {
 public:
  virtual ~ClusterObserver() = default;
  // The lock `name` alone.
  virtual ClusterLockView lock(const std::string& name, std::error_code& ec) = 0;
  // Every lock whose name starts with `prefix`, sorted by name.
  virtual std::vector<ClusterLockView> locks_under(const std::string& prefix,
                                                   std::error_code& ec) = 0;
};

// Connects at the first read. (Only packlock-etcd has the backend; packlock
// hands such command lines over before it gets here.)
std::unique_ptr<ClusterObserver> observe_cluster(const ClusterSettings& settings);

// True in packlock-etcd, false in packlock.
bool carries_cluster_backend() noexcept;

// When this command does not carry the backend and the arguments ask for a
// cluster, replaces the process with packlock-etcd; returns only when it
// need not, or cannot (then `missing` says what was looked for).
void hand_over_to_cluster_command(char** argv, std::string& missing);

}  // namespace packlock::cli
