#include <packlock/lock_errc.hpp>

#include <packlock/error.hpp>

namespace packlock {
namespace {

lock_errc class_of_packlock_code(errc code) noexcept {
  switch (code) {
    case errc::invalid_name: return lock_errc::invalid_name;
    case errc::timeout: return lock_errc::timeout;
    case errc::not_held:
    case errc::hijacked: return lock_errc::not_held;
    case errc::unlock_unsuccessful: return lock_errc::release_failed;
    case errc::busy:
    case errc::cancelled:
    case errc::not_a_regular_file:
    case errc::not_open:
    case errc::wait_signal_taken:
    case errc::dangling_pack_link:
    case errc::sidecar_unsupported:
    case errc::cluster_unavailable:
    case errc::cluster_refused:
    case errc::cluster_failed:
    case errc::lock_unsuccessful: return lock_errc::acquire_failed;
    case errc::conflicting_options: return lock_errc::generic;
  }
  return lock_errc::generic;
}

bool is_lock_errc(int value) noexcept {
  return value >= static_cast<int>(lock_errc::generic) &&
         value <= static_cast<int>(lock_errc::invalid_name);
}

// Stateless, so one immutable instance serves every thread.
class LockCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "packlock.lock"; }

  std::string message(int value) const override {
    switch (static_cast<lock_errc>(value)) {
      case lock_errc::generic: return "lock error";
      case lock_errc::acquire_failed: return "could not acquire the lock";
      case lock_errc::release_failed: return "could not release the lock";
      case lock_errc::timeout: return "timed out waiting for the lock";
      case lock_errc::not_held: return "lock is not held";
      case lock_errc::invalid_name: return "invalid lock name";
    }
    return "unknown lock error";
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    if (static_cast<lock_errc>(value) == lock_errc::timeout) return std::errc::timed_out;
    return {value, *this};
  }

  // The one place that decides which codes are "the same" as a lock_errc.
  bool equivalent(const std::error_code& code, int condition) const noexcept override {
    return code && static_cast<int>(lock_errc_of(code)) == condition;
  }
};

}  // namespace

const std::error_category& lock_category() noexcept {
  static const LockCategory instance;
  return instance;
}

lock_errc lock_errc_of(const std::error_code& ec) noexcept {
  if (!ec) return lock_errc{};
  if (ec.category() == lock_category()) {
    return is_lock_errc(ec.value()) ? static_cast<lock_errc>(ec.value()) : lock_errc::generic;
  }
  if (ec.category() == category()) return class_of_packlock_code(static_cast<errc>(ec.value()));
  if (ec.category() == std::system_category() || ec.category() == std::generic_category()) {
    return lock_errc::acquire_failed;
  }
  return lock_errc::generic;
}

}  // namespace packlock
