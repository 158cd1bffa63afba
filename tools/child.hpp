#pragma once
// The command run starts: a child process that cannot outlive packlock
// unprotected, and whose exec failure packlock reports itself.

#include <sys/types.h>

#include <string>
#include <system_error>
#include <vector>

#include "signals.hpp"

namespace packlock::cli {

// Forks and execs `argv` (searched in PATH) with the environment plus
// `extra_env` ("NAME=value", replacing a variable of the same name). In the
// child: the signal dispositions packlock found, and SIGTERM when packlock
// dies, even by SIGKILL (PR_SET_PDEATHSIG), since the kernel frees the lock
// then.
struct Spawned {
  pid_t pid = -1;
  std::error_code os_error;    // pipe or fork failed: no child
  std::error_code exec_error;  // exec failed: the child has been reaped
};
Spawned spawn_child(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                    const SignalCatcher& signals);

// 126 or 127 for an exec failure, as a shell does.
int exit_code_for_exec_error(const std::error_code& ec) noexcept;

// The child's exit status, or 128 + N when signal N ended it.
int exit_code_of(int wait_status) noexcept;

}  // namespace packlock::cli
