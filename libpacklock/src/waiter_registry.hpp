#pragma once
// Makes this process visible to other processes as a waiter for a pack.
//
// A waiting process holds a POSIX read lock on one byte of the pack's
// waiters file, `<sidecar>.waiters`: byte 0 while it waits for an exclusive
// lock, byte 1 while it waits for a shared one. The kernel lists those locks
// with the pid in /proc/locks and drops them when the process dies, even by
// SIGKILL, so the view needs no cleanup. POSIX (not OFD) locks because only
// they carry the pid; their one hazard, that closing any descriptor of the
// file drops all of the process's locks on it, is contained by the registry
// owning the only descriptor this process has of each waiters file.
//
// Visibility is best effort: a waiters file that cannot be created (a
// read-only directory) makes the waiter invisible, never fails the wait.

#include <string>
#include <sys/types.h>
#include <vector>

#include <packlock/mode.hpp>

namespace packlock::detail {

class Pack;

inline constexpr const char* kWaitersSuffix = ".waiters";

// Registered while it lives. Move-only.
class WaiterRegistration final {
 public:
  WaiterRegistration() noexcept = default;
  WaiterRegistration(const Pack& pack, Mode mode) noexcept;
  WaiterRegistration(WaiterRegistration&& other) noexcept;
  WaiterRegistration& operator=(WaiterRegistration&& other) noexcept;
  WaiterRegistration(const WaiterRegistration&) = delete;
  WaiterRegistration& operator=(const WaiterRegistration&) = delete;
  ~WaiterRegistration() { reset(); }

  bool active() const noexcept { return !key_.empty(); }
  void reset() noexcept;

 private:
  std::string key_;
  Mode mode_ = Mode::exclusive;
};

}  // namespace packlock::detail
