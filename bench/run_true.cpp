// run_true_wall: wall time of `packlock run PACK -- true` against
// `flock FILE true` on the same sidecar, started the same way (posix_spawn
// from this process, stdout and stderr to /dev/null) and interleaved, so
// that load on the machine falls on both alike. Medians of each.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "figure.hpp"
#include "scratch.hpp"

extern char** environ;

namespace packlock::bench {
namespace {

constexpr int kRounds = 400;

// Wall time of one run of `argv`, in nanoseconds; throws if it fails.
double time_run(const std::vector<std::string>& argv, const posix_spawn_file_actions_t& quiet) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const double start = now_ns();
  pid_t pid = 0;
  if (::posix_spawnp(&pid, args[0], &quiet, nullptr, args.data(), environ) != 0) {
    throw std::runtime_error("cannot start " + argv[0]);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  const double elapsed = now_ns() - start;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(argv[0] + " failed with status " + std::to_string(status));
  }
  return elapsed;
}

}  // namespace

void run_true(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const std::string pack = (scratch.path() / "pack").string();
  const std::vector<std::string> packlock{PACKLOCK_CLI_PATH, "run", pack, "--", "true"};
  const std::vector<std::string> flock{"flock", pack + "/.grex-lock", "true"};
  posix_spawn_file_actions_t quiet;
  ::posix_spawn_file_actions_init(&quiet);
  ::posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);

  time_run(packlock, quiet);  // creates the pack and its sidecar
  std::vector<double> ours, theirs;
  for (int i = 0; i < kRounds; ++i) {
    ours.push_back(time_run(packlock, quiet));
    theirs.push_back(time_run(flock, quiet));
  }
  ::posix_spawn_file_actions_destroy(&quiet);

  Figure figure{"run_true_wall", median(ours) / 1e3, "us", median(theirs) / 1e3,
                "ratio <= 1.25 to flock(1)"};
  figure.ok = figure.ratio() <= 1.25;
  figure.note = "medians of " + std::to_string(kRounds) +
                " interleaved runs each; baseline: util-linux flock(1) on the same sidecar";
  figures.push_back(figure);
}

}  // namespace packlock::bench
