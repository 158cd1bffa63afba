#pragma once
// Who holds and who waits for a pack, as the kernel's lock table shows it.
// Reads only: never creates the pack, the sidecar or anything else.

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <packlock/mode.hpp>

namespace packlock {

struct LockParty {
  pid_t pid = 0;
  Mode mode = Mode::exclusive;
  // For waiters: true for a packlock process registered as waiting, false
  // for a process blocked in flock(2) on the sidecar (flock(1), say).
  bool packlock = false;
};

struct PackObservation {
  bool sidecar_exists = false;
  std::vector<LockParty> holders;  // flock(2) locks on the sidecar
  std::vector<LockParty> waiters;
};

// /proc/locks lists the processes of this host only: a holder on another
// host of a network filesystem is not seen. A waiter that dies, even by
// SIGKILL, leaves the list with the process. Errors: the OS error for the
// pack directory (ENOENT when it is missing), errc::not_a_regular_file for a
// refused sidecar. Thread-safe.
PackObservation observe(const std::filesystem::path& pack, std::error_code& ec,
                        const std::string& sidecar_name = ".grex-lock");
PackObservation observe(const std::filesystem::path& pack,
                        const std::string& sidecar_name = ".grex-lock");

}  // namespace packlock
