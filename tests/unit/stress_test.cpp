// The reliability suite (ctest label `stress`): faults injected at random
// moments into real processes, and resource exhaustion.

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "support.hpp"

namespace packlock::test {
namespace {

constexpr int kCrashRounds = 100;
constexpr int kChurnersPerRound = 3;
// 16 processes of 2,000 turns each: library mixers, and shell loops of
// `packlock run PACK -- sh -c INCREMENT`. A command turn is two process
// starts, about 3 ms uncontended (20 ms under ASan, whose runtime starts
// slowly); dash is the cheapest increment, cheaper than `run -c` (which
// starts $SHELL) or a child of this test binary.
constexpr int kLibraryMixers = 14;
constexpr int kMixerIterations = 2000;
constexpr int kCommandMixers = 2;
constexpr int kCommandIterations = 2000;

struct LogLine {
  char event;  // 'B' entered the critical section, 'E' left it
  pid_t pid;
};

std::vector<LogLine> read_log(const fs::path& log) {
  std::vector<LogLine> lines;
  std::ifstream in(log);
  LogLine line{};
  while (in >> line.event >> line.pid) lines.push_back(line);
  return lines;
}

// Mutual exclusion, from the churners' log: a holder that entered either
// left before the next one entered or was killed while inside.
void check_exclusion(const std::vector<LogLine>& log, const std::set<pid_t>& killed) {
  pid_t inside = 0;  // 0: nobody
  int overlaps = 0;
  for (const LogLine& line : log) {
    if (line.event == 'B') {
      if (inside != 0 && !killed.contains(inside)) ++overlaps;
      inside = line.pid;
    } else if (line.event == 'E') {
      if (inside != line.pid) ++overlaps;  // left while another had entered
      inside = 0;
    }
  }
  BOOST_TEST(overlaps == 0);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(stress)

// Holders and waiters SIGKILLed at random moments (while acquiring, waiting,
// holding or releasing): no two holders ever overlap, and once they are all
// dead the pack is free at once and nobody is left registered as waiting.
BOOST_AUTO_TEST_CASE(random_sigkills_never_leave_the_pack_unusable) {
  PackDir dir;
  const fs::path log = dir.dir / "log";
  std::mt19937 random(std::random_device{}());
  std::set<pid_t> killed;
  int kills = 0;
  for (int round = 0; round < kCrashRounds; ++round) {
    std::vector<Process> churners;
    for (int i = 0; i < kChurnersPerRound; ++i) {
      churners.push_back(Process::child({"churn", dir.pack.string(), log.string()}));
    }
    for (Process& churner : churners) churner.expect_line("started");
    // Kill them one by one, each after a random moment of churning.
    std::vector<std::size_t> order(churners.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), random);
    for (const std::size_t i : order) {
      Process& churner = churners[i];
      std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
      churner.kill(SIGKILL);
      const int status = churner.wait();
      BOOST_REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
      killed.insert(churner.pid());
      ++kills;
    }
    std::error_code ec;
    PackLockHold hold = dir.lock.try_acquire(Mode::exclusive, ec);
    BOOST_REQUIRE_MESSAGE(!ec, "round " << round << ": pack not free after every holder died: "
                                        << ec.message());
    BOOST_TEST(observe(dir.pack).waiters.empty());
  }
  const auto lines = read_log(log);
  BOOST_TEST_MESSAGE(kills << " SIGKILLs, " << lines.size() / 2 << " critical sections");
  BOOST_TEST(lines.size() > static_cast<std::size_t>(kCrashRounds));
  check_exclusion(lines, killed);
}

// Mutual exclusion under load: library processes and packlock(1) runs mix
// exclusive increments and shared reads that check the counter is whole;
// the final count is exact.
BOOST_AUTO_TEST_CASE(library_and_command_holders_never_lose_an_update) {
  const char* cli = std::getenv("PACKLOCK_CLI");
  BOOST_REQUIRE_MESSAGE(cli, "PACKLOCK_CLI names the packlock command");
  PackDir dir;
  const fs::path counter = dir.dir / "counter";
  write_file(counter, "0\n0\n");
  std::vector<Process> mixers;
  for (int i = 0; i < kLibraryMixers; ++i) {
    mixers.push_back(Process::child(
        {"mixer", dir.pack.string(), counter.string(), std::to_string(kMixerIterations)}));
  }
  // Each command-line mixer: a shell loop of packlock run, exclusive
  // increments and shared checks, that prints its increments.
  const std::string loop =
      "n=0; i=0; while [ $i -lt " + std::to_string(kCommandIterations) + " ]; do"
      "  if [ $((i % 4)) -eq 0 ]; then"
      "    \"$0\" run -s \"$1\" -- sh -c '{ read a; read b; } < \"$0\"; [ \"$a\" = \"$b\" ]' \"$2\""
      "      || exit 9;"
      "  else"
      "    \"$0\" run \"$1\" -- sh -c '{ read a; read b; } < \"$0\"; [ \"$a\" = \"$b\" ] || exit 9;"
      "      echo $((a + 1)) > \"$0\"; echo $((a + 1)) >> \"$0\"' \"$2\" || exit 9;"
      "    n=$((n + 1));"
      "  fi; i=$((i + 1));"
      "done; echo $n";
  for (int i = 0; i < kCommandMixers; ++i) {
    mixers.push_back(Process({"sh", "-c", loop, cli, dir.pack.string(), counter.string()}));
  }
  long increments = 0;
  long interleaved = 0;  // command increments made while library mixers ran
  for (std::size_t i = 0; i < mixers.size(); ++i) {
    mixers[i].close_stdin();
    const auto made = mixers[i].read_line(300s);
    BOOST_REQUIRE_MESSAGE(made, "a mixer saw a torn counter or failed");
    increments += std::stol(*made);
    BOOST_TEST(mixers[i].exit_code(60s) == 0);
    if (i + 1 == kLibraryMixers) {
      const PackLockHold hold = dir.lock.acquire(Mode::shared);
      interleaved = std::stol(read_file(counter)) - increments;
    }
  }
  BOOST_TEST_MESSAGE(increments << " increments by " << mixers.size() << " processes, "
                                << interleaved << " of the commands' while library mixers ran");
  BOOST_TEST(interleaved > 0, "no command-line holder had a turn while library mixers ran");
  BOOST_TEST(read_file(counter) == std::to_string(increments) + "\n" +
                                       std::to_string(increments) + "\n");
}

// With the descriptor limit just above what is open, every call either
// works or fails with EMFILE; nothing crashes, and no descriptor is leaked.
// Not under sanitizers: their runtimes open files of their own (to read
// /proc/self/maps, say) and report false errors when they cannot.
#ifndef PACKLOCK_SANITIZED
BOOST_AUTO_TEST_CASE(descriptor_exhaustion_gives_clear_errors_and_leaks_nothing) {
  PackDir dir;
  BOOST_TEST(run({self_exe(), "--child", "fd_exhaustion", dir.pack.string(),
                  (dir.dir / "fresh").string()}) == kChildOk);
}
#endif

BOOST_AUTO_TEST_SUITE_END()

}  // namespace packlock::test
