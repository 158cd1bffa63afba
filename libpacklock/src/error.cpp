#include <packlock/error.hpp>

namespace packlock {
namespace {

// Stateless, so one immutable instance serves every thread.
class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "packlock"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::busy: return "lock is busy";
      case errc::timeout: return "timed out waiting for the lock";
      case errc::cancelled: return "operation cancelled";
      case errc::not_a_regular_file: return "not a regular file";
      case errc::invalid_name: return "invalid lock name";
      case errc::not_held: return "lock is not held";
      case errc::lock_unsuccessful: return "store is locked";
      case errc::unlock_unsuccessful: return "could not unlock store";
      case errc::hijacked: return "lock was lost: stolen, or the sidecar was unlinked or replaced";
      case errc::not_open: return "pack lock is not open";
      case errc::conflicting_options: return "conflicting lock request options";
      case errc::wait_signal_taken:
        return "the wait signal has a handler of the application's (see PACKLOCK_WAIT_SIGNAL)";
      case errc::dangling_pack_link:
        return "the pack is a symbolic link to nothing; packlock will not create its target";
      case errc::sidecar_unsupported:
        return "the pack's filesystem cannot hold a lock file";
      case errc::cluster_unavailable: return "no etcd endpoint answered";
      case errc::cluster_refused: return "etcd refused the credentials or the TLS handshake";
      case errc::cluster_failed: return "etcd failed the request";
    }
    return "unknown packlock error";
  }

  // Maps onto the portable conditions so that generic code (Asio's included)
  // recognises cancellation and timeouts without knowing packlock.
  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::cancelled: return std::errc::operation_canceled;
      case errc::timeout: return std::errc::timed_out;
      case errc::busy: return std::errc::resource_unavailable_try_again;
      case errc::not_a_regular_file: return std::errc::invalid_argument;
      case errc::conflicting_options: return std::errc::invalid_argument;
      case errc::dangling_pack_link: return std::errc::no_such_file_or_directory;
      case errc::cluster_unavailable: return std::errc::host_unreachable;
      case errc::cluster_refused: return std::errc::permission_denied;
      default: return {value, *this};
    }
  }
};

std::string describe(const std::string& verb, const std::filesystem::path& path) {
  return verb + " " + path.string();
}

}  // namespace

const std::error_category& category() noexcept {
  static const Category instance;
  return instance;
}

Error::Error(std::error_code ec, std::string verb, std::filesystem::path path,
             std::error_code cause)
    : std::system_error(ec, describe(verb, path)), path_(std::move(path)), cause_(cause) {
  if (cause_) what_ = std::string(std::system_error::what()) + ": " + cause_.message();
}

const char* Error::what() const noexcept {
  return cause_ ? what_.c_str() : std::system_error::what();
}

}  // namespace packlock
