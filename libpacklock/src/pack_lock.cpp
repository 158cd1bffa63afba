#include <packlock/pack_lock.hpp>

#include "engine.hpp"
#include "hold.hpp"
#include "pack.hpp"

namespace packlock {
namespace {

const std::filesystem::path kNoPath;

// `path` is only called on failure: building it costs more than the
// uncontended acquisition it would report on.
template <typename T, typename PathOf>
T value_or_throw(T value, const std::error_code& ec, const char* verb, PathOf path) {
  if (ec) throw Error(ec, verb, path());
  return value;
}

}  // namespace

using detail::Deadline;

PackLockHold::PackLockHold() noexcept = default;
PackLockHold::PackLockHold(std::unique_ptr<detail::Hold> hold) noexcept : hold_(std::move(hold)) {}
PackLockHold::PackLockHold(PackLockHold&&) noexcept = default;
PackLockHold& PackLockHold::operator=(PackLockHold&&) noexcept = default;
PackLockHold::~PackLockHold() = default;

bool PackLockHold::held() const noexcept { return hold_ && hold_->held(); }

std::error_code PackLockHold::release() noexcept {
  if (!hold_) return errc::not_held;
  return hold_->release();
}

Mode PackLockHold::mode() const noexcept { return hold_ ? hold_->mode() : Mode::exclusive; }

const std::filesystem::path& PackLockHold::pack() const noexcept {
  return hold_ ? hold_->pack().path() : kNoPath;
}

std::chrono::system_clock::time_point PackLockHold::acquired_at() const noexcept {
  return hold_ ? hold_->acquired_at() : std::chrono::system_clock::time_point{};
}

void PackLockHold::on_lost(std::function<void()> callback) {
  if (hold_) hold_->on_lost(std::move(callback));
}

bool PackLockHold::lost() const noexcept { return hold_ && hold_->lost(); }

PackLock::PackLock() noexcept = default;
PackLock::PackLock(std::shared_ptr<const detail::Pack> pack) noexcept : pack_(std::move(pack)) {}

PackLock PackLock::open(const std::filesystem::path& pack, const LockOptions& options,
                        std::error_code& ec) noexcept {
  return PackLock(detail::Pack::open(pack, options, ec));
}

PackLock PackLock::open(const std::filesystem::path& pack, const LockOptions& options) {
  std::error_code ec;
  PackLock lock = open(pack, options, ec);
  return value_or_throw(std::move(lock), ec, "open", [&] { return pack / options.sidecar_name; });
}

PackLock PackLock::open(const std::filesystem::path& pack, std::error_code& ec) noexcept {
  return open(pack, LockOptions{}, ec);
}

PackLock PackLock::open(const std::filesystem::path& pack) { return open(pack, LockOptions{}); }

PackLockHold PackLock::try_acquire(Mode mode, std::error_code& ec) const noexcept {
  if (!pack_) {
    ec = errc::not_open;
    return {};
  }
  const auto pack = detail::Pack::for_this_process(pack_, ec);
  if (ec) return {};
  return detail::HoldAccess::wrap(detail::try_acquire(pack, mode, ec));
}

PackLockHold PackLock::try_acquire(Mode mode) const {
  std::error_code ec;
  PackLockHold hold = try_acquire(mode, ec);
  return value_or_throw(std::move(hold), ec, "lock", [this] { return sidecar(); });
}

PackLockHold PackLock::acquire(Mode mode, Timeout timeout, std::error_code& ec) const noexcept {
  if (!pack_) {
    ec = errc::not_open;
    return {};
  }
  const auto pack = detail::Pack::for_this_process(pack_, ec);
  if (ec) return {};
  return detail::HoldAccess::wrap(detail::acquire(pack, mode, detail::deadline_of(timeout), ec));
}

PackLockHold PackLock::acquire(Mode mode, Timeout timeout) const {
  std::error_code ec;
  PackLockHold hold = acquire(mode, timeout, ec);
  return value_or_throw(std::move(hold), ec, "lock", [this] { return sidecar(); });
}

const std::filesystem::path& PackLock::pack() const noexcept {
  return pack_ ? pack_->path() : kNoPath;
}

std::filesystem::path PackLock::sidecar() const {
  return pack_ ? pack_->sidecar_path() : std::filesystem::path();
}

}  // namespace packlock
