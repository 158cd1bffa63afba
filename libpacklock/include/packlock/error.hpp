#pragma once
// packlock's error codes, their category, and the exception thrown by the
// throwing overloads.
//
// Errors from the operating system keep their errno in std::system_category();
// packlock's own conditions use packlock::errc in packlock::category(). Codes
// compare with the portable conditions where one exists, so callers may write
//   if (ec == std::errc::operation_canceled) ...
// for packlock::errc::cancelled (likewise timeout -> std::errc::timed_out and
// busy -> std::errc::resource_unavailable_try_again).

#include <filesystem>
#include <string>
#include <system_error>
#include <type_traits>

namespace packlock {

enum class errc {
  busy = 1,             // held elsewhere, or re-entry by the holding thread
  timeout,              // the wait ended at its deadline
  cancelled,            // the wait was cancelled
  not_a_regular_file,   // the sidecar is a symlink, directory, FIFO, ...
  invalid_name,         // a lock name that LockManager refuses
  not_held,             // release of something that is not held
  lock_unsuccessful,    // try_lock / try_rlock: "store is locked"
  unlock_unsuccessful,  // UnlockFunc: "could not unlock store"
  hijacked,             // lost: stolen, or the sidecar no longer names the held inode
  not_open,             // a default-constructed or moved-from PackLock
  conflicting_options,  // LockManager::request: options that exclude each other
  wait_signal_taken,    // the wait signal has a handler of the application's
  dangling_pack_link,   // the pack is a symbolic link to nothing
  sidecar_unsupported,  // the pack's filesystem cannot hold a sidecar (/proc, /sys)
  cluster_unavailable,  // no etcd endpoint answered within the dial timeout
  cluster_refused,      // etcd refused the TLS handshake or the credentials
  cluster_failed,       // etcd answered a request with an error
};

const std::error_category& category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), category()};
}

// Thrown by the throwing overloads. what() reads "<verb> <path>: <error>",
// e.g. "lock /srv/pack/.grex-lock: lock is busy"; code() is the error code
// the std::error_code& overload would have reported. An error that wraps
// another (try_lock's lock_unsuccessful) carries it as cause(), and what()
// ends with it: "lock /srv/.posixage.lock: store is locked: operation
// cancelled".
class Error : public std::system_error {
 public:
  Error(std::error_code ec, std::string verb, std::filesystem::path path,
        std::error_code cause = {});

  const std::filesystem::path& path() const noexcept { return path_; }
  const std::error_code& cause() const noexcept { return cause_; }
  const char* what() const noexcept override;

 private:
  std::filesystem::path path_;
  std::error_code cause_;
  std::string what_;  // with the cause
};

}  // namespace packlock

template <>
struct std::is_error_code_enum<packlock::errc> : std::true_type {};
