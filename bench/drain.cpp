// drain_500: 500 `packlock run -w 120 PACK -- true` processes wait behind
// one holder; the figure is the time from the release until the last of
// them is done. Baseline: the same with `flock -w 120 FILE true`, in the
// same run. Both start the same way (posix_spawn from this process), and
// the release comes once the kernel shows every one of them blocked.

#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <packlock/packlock.hpp>

#include "figure.hpp"
#include "scratch.hpp"

extern char** environ;

namespace packlock::bench {
namespace {

constexpr int kWaiters = 500;

struct Drain {
  double seconds = 0;
  int failed = 0;  // waiters that did not exit 0
  bool parked = false;
};

pid_t spawn(const std::vector<std::string>& argv, const posix_spawn_file_actions_t& quiet) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  if (::posix_spawnp(&pid, args[0], &quiet, nullptr, args.data(), environ) != 0) {
    throw std::runtime_error("cannot start " + argv[0]);
  }
  return pid;
}

Drain drain_once(const std::filesystem::path& sidecar, const std::vector<std::string>& argv,
                 const posix_spawn_file_actions_t& quiet) {
  const int holder = ::open(sidecar.c_str(), O_RDWR | O_CLOEXEC);
  ::flock(holder, LOCK_EX);
  struct stat st {};
  ::fstat(holder, &st);
  std::vector<pid_t> waiters;
  for (int i = 0; i < kWaiters; ++i) waiters.push_back(spawn(argv, quiet));
  Drain drain;
  drain.parked = await_blocked_requests(st.st_ino, 0, kWaiters);
  const double start = now_ns();
  ::close(holder);
  for (const pid_t pid : waiters) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++drain.failed;
  }
  drain.seconds = (now_ns() - start) / 1e9;
  return drain;
}

}  // namespace

void drain(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const auto pack = scratch.path() / "pack";
  const auto sidecar = PackLock::open(pack).sidecar();
  posix_spawn_file_actions_t quiet;
  ::posix_spawn_file_actions_init(&quiet);
  ::posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
  const Drain ours =
      drain_once(sidecar, {PACKLOCK_CLI_PATH, "run", "-w", "120", pack.string(), "--", "true"}, quiet);
  const Drain theirs = drain_once(sidecar, {"flock", "-w", "120", sidecar.string(), "true"}, quiet);
  ::posix_spawn_file_actions_destroy(&quiet);

  Figure figure{"drain_500", ours.seconds * 1000, "ms", theirs.seconds * 1000,
                "ratio <= 1.5 to flock(1)"};
  figure.ok = figure.ratio() <= 1.5 && ours.failed == 0 && theirs.failed == 0 && ours.parked &&
              theirs.parked;
  figure.note = std::to_string(kWaiters) + " waiters, " + std::to_string(ours.failed) +
                " failed (flock(1): " + std::to_string(theirs.failed) + ")" +
                (ours.parked && theirs.parked ? "" : "; NOT every waiter parked before the release");
  figures.push_back(figure);
}

}  // namespace packlock::bench
