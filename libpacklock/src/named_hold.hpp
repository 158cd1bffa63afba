#pragma once
// What a named-lock request holds once granted: a pack's lock (a manager
// of a lock directory) or a cluster lock (a manager over etcd). The
// request's bookkeeping (request_registry.hpp) needs the same four things
// of either, and nothing else.

#include <cstdint>
#include <functional>
#include <system_error>
#include <utility>
#include <variant>

#include <packlock/cluster.hpp>
#include <packlock/error.hpp>
#include <packlock/pack_lock_hold.hpp>

namespace packlock::detail {

class NamedHold {
 public:
  NamedHold() noexcept = default;
  NamedHold(PackLockHold hold) noexcept : hold_(std::move(hold)) {}
  NamedHold(ClusterLockHold hold) noexcept : hold_(std::move(hold)) {}

  bool held() const noexcept {
    return std::visit([](const auto& hold) { return static_cast<bool>(hold); }, hold_);
  }

  bool lost() const noexcept {
    return std::visit([](const auto& hold) { return hold.lost(); }, hold_);
  }

  void on_lost(std::function<void()> callback) {
    std::visit([&](auto& hold) { hold.on_lost(std::move(callback)); }, hold_);
  }

  // A cluster hold's fencing token; 0 for a pack's lock, which has none.
  std::int64_t fencing_token() const noexcept {
    const auto* cluster = std::get_if<ClusterLockHold>(&hold_);
    return cluster ? cluster->fencing_token() : 0;
  }

  // What PackLockHold::release() says: its errors, and errc::not_held for
  // nothing held.
  std::error_code release() noexcept {
    if (auto* pack = std::get_if<PackLockHold>(&hold_)) return pack->release();
    auto& cluster = std::get<ClusterLockHold>(hold_);
    if (!cluster) return errc::not_held;
    std::error_code ec;
    cluster.release(ec);
    return ec;
  }

 private:
  std::variant<PackLockHold, ClusterLockHold> hold_;
};

}  // namespace packlock::detail
