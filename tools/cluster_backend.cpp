// packlock-etcd's side of cluster_run.hpp: the cluster lock through the
// library's ClusterLock.

#include <map>

#include <packlock/cluster.hpp>

#include "cluster_run.hpp"

namespace packlock::cli {
namespace {

class Held final : public ClusterRunHold {
 public:
  explicit Held(ClusterLockHold hold) : hold_(std::move(hold)) {}
  std::int64_t fencing_token() const override { return hold_.fencing_token(); }
  const std::string& key() const override { return hold_.key(); }
  void on_lost(std::function<void()> callback) override { hold_.on_lost(std::move(callback)); }
  std::error_code release() override {
    std::error_code ec;
    hold_.release(ec);
    return ec;
  }

 private:
  ClusterLockHold hold_;
};

ClusterOptions options_of(const ClusterSettings& settings) {
  ClusterOptions options = ClusterOptions::from_environment();
  options.endpoints = ClusterOptions::endpoint_list(settings.endpoints);
  if (!settings.cacert.empty()) options.cacert = settings.cacert;
  if (!settings.cert.empty()) options.cert = settings.cert;
  if (!settings.key_file.empty()) options.key = settings.key_file;
  if (!settings.user.empty()) {
    const auto colon = settings.user.find(':');
    options.user = settings.user.substr(0, colon);
    if (colon != std::string::npos) options.password = settings.user.substr(colon + 1);
  }
  if (!settings.password.empty()) options.password = settings.password;
  if (settings.dial_timeout.given) {
    options.dial_timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(settings.dial_timeout.value);
  }
  return options;
}

class Observer final : public ClusterObserver {
 public:
  explicit Observer(ClusterOptions options) : options_(std::move(options)) {}

  ClusterLockView lock(const std::string& name, std::error_code& ec) override {
    auto opened = locks_.find(name);
    if (opened == locks_.end()) {
      ClusterLock lock = ClusterLock::open(options_, name, LockOptions(), ec);
      if (ec) return {};
      opened = locks_.emplace(name, std::move(lock)).first;
    }
    return opened->second.observe(ec);
  }

  std::vector<ClusterLockView> locks_under(const std::string& prefix, std::error_code& ec) override {
    return observe_cluster(options_, prefix, ec);
  }

 private:
  ClusterOptions options_;
  std::map<std::string, ClusterLock> locks_;
};

}  // namespace

std::unique_ptr<ClusterObserver> observe_cluster(const ClusterSettings& settings) {
  return std::make_unique<Observer>(options_of(settings));
}

bool carries_cluster_backend() noexcept { return true; }

std::unique_ptr<ClusterRunHold> take_cluster_lock(const ClusterSettings& settings,
                                                  const std::string& name, Mode mode,
                                                  bool may_wait, const Context& context,
                                                  const LockSettings& lock, std::string command,
                                                  std::error_code& ec) {
  LockOptions options;
  const Timing timing = lock.timing();
  options.heartbeat = timing.heartbeat;
  options.stale_after = timing.stale_after;
  options.command = std::move(command);
  options.record_command = !lock.no_record_command;
  const ClusterLock cluster = ClusterLock::open(options_of(settings), name, options, ec);
  if (ec) return nullptr;
  ClusterLockHold hold = may_wait ? cluster.acquire(mode, context, ec) : cluster.try_acquire(mode, ec);
  if (ec) return nullptr;
  return std::make_unique<Held>(std::move(hold));
}

}  // namespace packlock::cli
