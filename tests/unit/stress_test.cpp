// The reliability suite (ctest label `stress`): faults injected at random
// moments into real processes, and resource exhaustion.

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
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

// With the descriptor limit just above what is open, every call either
// works or fails with EMFILE; nothing crashes, and no descriptor is leaked.
BOOST_AUTO_TEST_CASE(descriptor_exhaustion_gives_clear_errors_and_leaks_nothing) {
  PackDir dir;
  BOOST_TEST(run({self_exe(), "--child", "fd_exhaustion", dir.pack.string(),
                  (dir.dir / "fresh").string()}) == kChildOk);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace packlock::test
