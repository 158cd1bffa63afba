// The cluster face (<packlock/cluster.hpp>): ClusterLock over the engine's
// ClusterHold (cluster_lock.hpp).

#include <packlock/cluster.hpp>

#include <cstdlib>

#include <packlock/error.hpp>

#include "cluster_lock.hpp"
#include "cluster_query.hpp"
#include "etcd_client.hpp"
#include "owner_record.hpp"

namespace packlock {
namespace {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

detail::EtcdSettings settings_of(const ClusterOptions& cluster) {
  detail::EtcdSettings settings;
  settings.endpoints = cluster.endpoints;
  settings.cacert = cluster.cacert;
  settings.cert = cluster.cert;
  settings.key = cluster.key;
  settings.user = cluster.user;
  settings.password = cluster.password;
  settings.dial_timeout = cluster.dial_timeout;
  settings.token_refresh = cluster.token_refresh;
  return settings;
}

// The lease's TTL: the stale period in whole seconds, at least one.
std::chrono::seconds ttl_of(std::chrono::nanoseconds stale_after) {
  const auto seconds = std::chrono::ceil<std::chrono::seconds>(stale_after);
  return std::max(seconds, std::chrono::seconds(1));
}

}  // namespace

std::vector<std::string> ClusterOptions::endpoint_list(std::string_view text) {
  std::vector<std::string> parts;
  while (!text.empty()) {
    const auto comma = text.find(',');
    if (const auto part = text.substr(0, comma); !part.empty()) parts.emplace_back(part);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return parts;
}

ClusterOptions ClusterOptions::from_environment() {
  ClusterOptions options;
  std::string endpoints = environment("PACKLOCK_ETCD_ENDPOINTS");
  if (endpoints.empty()) endpoints = environment("ETCDCTL_ENDPOINTS");
  options.endpoints = endpoint_list(endpoints);
  options.cacert = environment("ETCDCTL_CACERT");
  options.cert = environment("ETCDCTL_CERT");
  options.key = environment("ETCDCTL_KEY");
  const std::string user = environment("ETCDCTL_USER");
  const auto colon = user.find(':');
  options.user = user.substr(0, colon);
  options.password =
      colon == std::string::npos ? environment("ETCDCTL_PASSWORD") : user.substr(colon + 1);
  return options;
}

std::vector<ClusterLockView> observe_cluster(const ClusterOptions& cluster, std::string_view prefix) {
  std::error_code ec;
  std::vector<ClusterLockView> views = observe_cluster(cluster, prefix, ec);
  if (ec) throw Error(ec, "observe", std::string(prefix));
  return views;
}

std::vector<ClusterLockView> observe_cluster(const ClusterOptions& cluster, std::string_view prefix,
                                             std::error_code& ec) noexcept try {
  const auto client = detail::EtcdClient::connect(settings_of(cluster), ec);
  if (ec) return {};
  return detail::query_locks(*client, std::string(prefix), ec);
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

std::vector<ClusterLockView> observe_cluster(const ClusterLock& connection, std::string_view prefix,
                                             std::error_code& ec) noexcept try {
  ec.clear();
  if (!connection.client_) {
    ec = errc::not_open;
    return {};
  }
  return detail::query_locks(*connection.client_, std::string(prefix), ec);
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

ClusterLockHold::ClusterLockHold() noexcept = default;
ClusterLockHold::ClusterLockHold(std::unique_ptr<detail::ClusterHold> hold) noexcept
    : hold_(std::move(hold)) {}
ClusterLockHold::ClusterLockHold(ClusterLockHold&&) noexcept = default;
ClusterLockHold& ClusterLockHold::operator=(ClusterLockHold&& other) noexcept {
  if (this != &other) {
    std::error_code ignored;
    release(ignored);
    hold_ = std::move(other.hold_);
  }
  return *this;
}
ClusterLockHold::~ClusterLockHold() {
  std::error_code ignored;
  release(ignored);
}

std::int64_t ClusterLockHold::fencing_token() const noexcept {
  return hold_ ? hold_->fencing_token() : 0;
}

const std::string& ClusterLockHold::key() const noexcept {
  static const std::string none;
  return hold_ ? hold_->key() : none;
}

bool ClusterLockHold::lost() const noexcept { return hold_ && hold_->lost(); }

void ClusterLockHold::on_lost(std::function<void()> callback) {
  if (hold_) hold_->on_lost(std::move(callback));
}

void ClusterLockHold::release() {
  std::error_code ec;
  const std::string key = this->key();
  release(ec);
  if (ec) throw Error(ec, "release", key);
}

void ClusterLockHold::release(std::error_code& ec) noexcept {
  ec.clear();
  if (!hold_) return;
  ec = hold_->release();
  hold_.reset();
}

ClusterLock::ClusterLock() noexcept = default;
ClusterLock::~ClusterLock() = default;
ClusterLock::ClusterLock(const ClusterLock&) = default;
ClusterLock& ClusterLock::operator=(const ClusterLock&) = default;

ClusterLock ClusterLock::open(const ClusterOptions& cluster, std::string_view name,
                              const LockOptions& options) {
  std::error_code ec;
  ClusterLock lock = open(cluster, name, options, ec);
  if (ec) throw Error(ec, "connect for", std::string(name));
  return lock;
}

ClusterLock ClusterLock::open(const ClusterOptions& cluster, std::string_view name,
                              const LockOptions& options, std::error_code& ec) noexcept try {
  ec.clear();
  ClusterLock lock;
  if (name.empty() || name.find('\0') != std::string_view::npos) {
    ec = errc::invalid_name;
    return lock;
  }
  lock.client_ = detail::EtcdClient::connect(settings_of(cluster), ec);
  if (ec) return ClusterLock();
  lock.name_ = std::string(name);
  lock.options_ = options;
  return lock;
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return ClusterLock();
}

ClusterLock ClusterLock::sibling(std::string_view name) const {
  ClusterLock lock;
  if (!client_) return lock;
  lock.client_ = client_;
  lock.name_ = std::string(name);
  lock.options_ = options_;
  return lock;
}

ClusterLockView ClusterLock::observe() const {
  std::error_code ec;
  ClusterLockView view = observe(ec);
  if (ec) throw Error(ec, "observe", name_);
  return view;
}

ClusterLockView ClusterLock::observe(std::error_code& ec) const noexcept try {
  ec.clear();
  if (!client_) {
    ec = errc::not_open;
    return {};
  }
  return detail::query_lock(*client_, name_, ec);
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

detail::ClusterLockRequest ClusterLock::request_for(
    Mode mode, bool may_wait, std::optional<std::chrono::steady_clock::time_point> deadline) const {
  const Timing timing = resolved_timing(options_.heartbeat, options_.stale_after);
  detail::ClusterLockRequest request;
  request.name = name_;
  request.record = detail::record_of_this_process(options_);
  request.ttl = ttl_of(timing.stale_after);
  request.heartbeat = timing.heartbeat;
  request.contend.mode = mode;
  request.contend.may_wait = may_wait;
  request.contend.deadline = deadline;
  return request;
}

ClusterLockHold ClusterLock::take(Mode mode, bool may_wait,
                                  std::optional<std::chrono::steady_clock::time_point> deadline,
                                  detail::Cancellation* cancel, std::error_code& ec) const noexcept try {
  ec.clear();
  if (!client_) {
    ec = errc::not_open;
    return {};
  }
  detail::ClusterLockRequest request = request_for(mode, may_wait, deadline);
  request.contend.cancel = cancel;
  return ClusterLockHold(detail::ClusterHold::acquire(client_, request, ec));
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

ClusterLockHold ClusterLock::try_acquire(Mode mode) const {
  std::error_code ec;
  ClusterLockHold hold = try_acquire(mode, ec);
  if (ec) throw Error(ec, "lock", name_);
  return hold;
}

ClusterLockHold ClusterLock::try_acquire(Mode mode, std::error_code& ec) const noexcept {
  return take(mode, /*may_wait=*/false, std::nullopt, nullptr, ec);
}

ClusterLockHold ClusterLock::steal() const {
  std::error_code ec;
  ClusterLockHold hold = steal(ec);
  if (ec) throw Error(ec, "steal", name_);
  return hold;
}

ClusterLockHold ClusterLock::steal(std::error_code& ec) const noexcept try {
  ec.clear();
  if (!client_) {
    ec = errc::not_open;
    return {};
  }
  detail::ClusterLockRequest request = request_for(Mode::exclusive, /*may_wait=*/false, std::nullopt);
  request.contend.steal = true;
  return ClusterLockHold(detail::ClusterHold::acquire(client_, request, ec));
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

ClusterLockHold ClusterLock::acquire(Mode mode, Timeout timeout) const {
  std::error_code ec;
  ClusterLockHold hold = acquire(mode, timeout, ec);
  if (ec) throw Error(ec, "lock", name_);
  return hold;
}

ClusterLockHold ClusterLock::acquire(Mode mode, Timeout timeout, std::error_code& ec) const noexcept {
  // deadline_of: a timeout too long to add to now() is no limit.
  return take(mode, /*may_wait=*/true, detail::deadline_of(timeout), nullptr, ec);
}

ClusterLockHold ClusterLock::acquire(Mode mode, const Context& context,
                                     std::error_code& ec) const noexcept {
  return take(mode, /*may_wait=*/true, context.deadline(), context.cancellation_.get(), ec);
}

}  // namespace packlock
