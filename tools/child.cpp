#include "child.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "exit_codes.hpp"

extern char** environ;

namespace packlock::cli {
namespace {

std::vector<std::string> merged_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto replaced = [&](const std::string& assignment) {
      const auto name_end = assignment.find('=') + 1;
      return text.substr(0, name_end) == std::string_view(assignment).substr(0, name_end);
    };
    if (std::none_of(extra.begin(), extra.end(), replaced)) env.emplace_back(text);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Between vfork and exec, on the parent's memory: only system calls, no
// allocation, no change to anything the parent reads.
[[noreturn]] void become_command(char* const* argv, char* const* envp, pid_t parent,
                                 const SignalCatcher& signals, const sigset_t& old_mask,
                                 int error_pipe) {
  signals.restore_in_child();
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  // packlock died before the prctl: the lock is gone already.
  if (::getppid() != parent) ::_exit(kExitSignalBase + SIGTERM);
  ::execvpe(argv[0], argv, envp);
  const int err = errno;
  [[maybe_unused]] const auto written = ::write(error_pipe, &err, sizeof err);
  ::_exit(kExitNotFound);
}

}  // namespace

Spawned spawn_child(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                    const SignalCatcher& signals) {
  Spawned spawned;
  std::vector<std::string> args = argv;
  std::vector<std::string> env = merged_environment(extra_env);
  const std::vector<char*> arg_pointers = pointers(args);
  const std::vector<char*> env_pointers = pointers(env);
  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
    spawned.os_error.assign(errno, std::system_category());
    return spawned;
  }
  const detail::UniqueFd error_read(error_pipe[0]);
  detail::UniqueFd error_write(error_pipe[1]);
  // Signals wait until the child has put back the dispositions packlock
  // found: a handler running in the child would write to the parent's pipe
  // and memory.
  sigset_t all, old_mask;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old_mask);
  const pid_t parent = ::getpid();
  // vfork: the child only makes system calls until it execs, and copying
  // the page tables of packlock for a moment's child is what a fork costs.
  const pid_t pid = ::vfork();
  if (pid == 0) {
    become_command(arg_pointers.data(), env_pointers.data(), parent, signals, old_mask,
                   error_write.get());
  }
  const int fork_errno = errno;
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid < 0) {
    spawned.os_error.assign(fork_errno, std::system_category());
    return spawned;
  }
  error_write.reset();
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(error_read.get(), &exec_errno, sizeof exec_errno);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof exec_errno) {
    spawned.exec_error.assign(exec_errno, std::system_category());
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return spawned;
  }
  spawned.pid = pid;
  return spawned;
}

int exit_code_for_exec_error(const std::error_code& ec) noexcept {
  return ec == std::errc::no_such_file_or_directory ? kExitNotFound : kExitCannotRun;
}

int exit_code_of(int wait_status) noexcept {
  if (WIFSIGNALED(wait_status)) return kExitSignalBase + WTERMSIG(wait_status);
  return WEXITSTATUS(wait_status);
}

}  // namespace packlock::cli
