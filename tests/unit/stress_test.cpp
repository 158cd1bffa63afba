// The reliability suite (ctest label `stress`): mutual exclusion under
// load, faults injected at random moments into real processes, storms of
// stale recoverers and stealers, and resource exhaustion.

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
// Storms: so many processes at once on one lock, round after round.
constexpr int kStormers = 10;
constexpr int kStormRounds = 6;

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

// Process groups that get SIGKILL when the reaper goes, also when a test
// fails early: a shell loop's commands are its children, whom its own end
// does not end.
class GroupReaper {
 public:
  GroupReaper() = default;
  GroupReaper(const GroupReaper&) = delete;
  GroupReaper& operator=(const GroupReaper&) = delete;
  ~GroupReaper() {
    for (const pid_t group : groups_) ::kill(-group, SIGKILL);
  }
  void add(pid_t group) { groups_.insert(group); }
  // Its leader ended on its own, after each command it waited for: nothing
  // is left of the group, and its id may be reused.
  void forget(pid_t group) { groups_.erase(group); }

 private:
  std::set<pid_t> groups_;
};

bool starts_with(const std::string& line, const std::string& prefix) {
  return line.rfind(prefix, 0) == 0;
}

// The answer of an agent or requester to its last command: its next line
// that is not a log event ("event ..."). The events passed over go to
// `events`. "" when nothing comes in time: the process hangs.
std::string answer(Process& process, std::vector<std::string>& events) {
  while (const auto line = process.read_line(20s)) {
    if (!starts_with(*line, "event ")) return *line;
    events.push_back(*line);
  }
  return "";
}

std::string answer(Process& process) {
  std::vector<std::string> events;
  return answer(process, events);
}

// The line of `lines` that starts with `prefix`, or "".
std::string find_line(const std::vector<std::string>& lines, const std::string& prefix) {
  const auto it = std::find_if(lines.begin(), lines.end(),
                               [&](const std::string& line) { return starts_with(line, prefix); });
  return it == lines.end() ? "" : *it;
}

// Which of `processes` the kernel's lock table shows holding `pack`'s
// sidecar (the inode its path names), failing the test unless exactly one.
std::size_t sole_holder(const fs::path& pack, const std::vector<Process>& processes) {
  const PackObservation seen = observe(pack);
  BOOST_REQUIRE_EQUAL(seen.holders.size(), 1u);
  const auto it = std::find_if(processes.begin(), processes.end(), [&](const Process& process) {
    return process.pid() == seen.holders.front().pid;
  });
  BOOST_REQUIRE_MESSAGE(it != processes.end(), "pid " << seen.holders.front().pid << " holds");
  return static_cast<std::size_t>(it - processes.begin());
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
  // Each loop leads a session of its own (setsid), so that the packlock runs
  // it starts end with the test even when it fails half-way.
  GroupReaper reaper;
  for (int i = 0; i < kCommandMixers; ++i) {
    mixers.push_back(
        Process({"setsid", "sh", "-c", loop, cli, dir.pack.string(), counter.string()}));
    reaper.add(mixers.back().pid());
  }
  long increments = 0;
  long interleaved = 0;  // command increments made while library mixers ran
  for (std::size_t i = 0; i < mixers.size(); ++i) {
    mixers[i].close_stdin();
    const auto made = mixers[i].read_line(300s);
    BOOST_REQUIRE_MESSAGE(made, "mixer " << i << " saw a torn counter, failed or hung");
    increments += std::stol(*made);
    BOOST_TEST(mixers[i].exit_code(60s) == 0);
    reaper.forget(mixers[i].pid());
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

// Stale storm: a holder is stopped and its mtime aged an hour, then ten
// processes recover its lock at once, half with try_acquire and half with
// a short blocking acquire, round after round. In each round exactly one of
// them gets the lock, on a new sidecar, and holds it alone while the others
// are told busy or timeout (none hangs); one of them unlinked the stale
// inode, and nobody another; the robbed holder, let go on, is told.
BOOST_AUTO_TEST_CASE(a_storm_of_stale_recoverers_ends_with_one_holder_and_every_loser_told) {
  PackDir dir;
  const fs::path sidecar = dir.lock.sidecar();
  Process robbed = Process::child({"agent", dir.pack.string(), "heartbeat=50", "stale=300"});
  // Recoverers judge by 10 s, which only the aged mtime exceeds: a winner
  // whose heartbeat is late on a loaded machine is not stale to the rest.
  std::vector<Process> recoverers;
  for (int i = 0; i < kStormers; ++i) {
    recoverers.push_back(Process::child({"agent", dir.pack.string(), "heartbeat=100",
                                         "stale=10000", "policy=mtime", "timeout=300"}));
  }
  const auto tries = [](std::size_t i) { return i % 2 == 0; };
  for (int round = 0; round < kStormRounds; ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      robbed.write_line("acquire");
      const std::string held = answer(robbed);
      BOOST_REQUIRE(starts_with(held, "locked "));
      const ino_t stale_inode = inode_in(held);
      robbed.stop();
      set_mtime(sidecar, -3600s);

      for (std::size_t i = 0; i < recoverers.size(); ++i) {
        recoverers[i].write_line(tries(i) ? "try" : "acquire");
      }
      std::vector<std::string> events;
      std::vector<std::size_t> winners;
      ino_t won_inode = 0;
      for (std::size_t i = 0; i < recoverers.size(); ++i) {
        const std::string said = answer(recoverers[i], events);
        if (starts_with(said, "locked ")) {
          winners.push_back(i);
          won_inode = inode_in(said);
        } else {
          BOOST_TEST(said == (tries(i) ? "busy" : "timeout"), "recoverer " << i);
        }
      }
      // Nobody has released since: one winner means one holder throughout.
      BOOST_REQUIRE_EQUAL(winners.size(), 1u);
      BOOST_TEST(won_inode != stale_inode);
      BOOST_TEST(sole_holder(dir.pack, recoverers) == winners.front());
      BOOST_TEST(sidecar_inode(dir.pack) == won_inode);
      BOOST_TEST(flock_nonblocking(sidecar) == 1);
      int recoveries = 0;
      for (const std::string& event : events) {
        if (!starts_with(event, "event stale_recovered")) {
          BOOST_ERROR("unexpected " << event);
          continue;
        }
        ++recoveries;
        BOOST_TEST(event.find("inode " + std::to_string(stale_inode) + ",") != std::string::npos,
                   event);
      }
      BOOST_TEST(recoveries == 1);

      robbed.kill(SIGCONT);
      BOOST_TEST(robbed.wait_for("event hijacked").has_value());
      BOOST_TEST(robbed.wait_for("on_lost").has_value());
      robbed.write_line("release");
      BOOST_TEST(answer(robbed) == "released");
      recoverers[winners.front()].write_line("release");
      BOOST_TEST(answer(recoverers[winners.front()]) == "released");
    }
  }
}

// Steal storm: ten processes steal one named lock at once, round after
// round, from a holder in another process. Each steal either takes the
// lock or is told busy (none hangs). Stealers may rob each other in turn,
// but in the end the kernel shows one holder, the one granted stealer that
// is not told it lost; every other granted stealer and the first holder
// are told (through inotify: heartbeats are an hour long), and their
// requests end hijacked.
BOOST_AUTO_TEST_CASE(a_storm_of_stealers_ends_with_one_holder_and_every_loser_told) {
  TempDir dir;
  const fs::path lock_dir = dir / "locks";
  const fs::path pack = lock_dir / "x";
  const auto requester = [&] {
    return Process::child({"named_requester", lock_dir.string(), "x", "heartbeat=3600000",
                           "stale=7200000"});
  };
  Process first = requester();
  std::vector<Process> stealers;
  for (int i = 0; i < kStormers; ++i) stealers.push_back(requester());
  int grants = 0;
  for (int round = 0; round < kStormRounds; ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      first.write_line("request");
      BOOST_REQUIRE(starts_with(answer(first), "locked "));

      for (Process& stealer : stealers) stealer.write_line("steal");
      std::vector<std::vector<std::string>> events(stealers.size());
      std::vector<std::size_t> granted;
      std::vector<ino_t> inodes(stealers.size());
      for (std::size_t i = 0; i < stealers.size(); ++i) {
        const std::string said = answer(stealers[i], events[i]);
        if (starts_with(said, "locked ")) {
          granted.push_back(i);
          inodes[i] = inode_in(said);
        } else {
          BOOST_TEST(said == "result busy", "stealer " << i);
        }
      }
      BOOST_REQUIRE(!granted.empty());
      const std::size_t holder = sole_holder(pack, stealers);
      BOOST_REQUIRE(std::find(granted.begin(), granted.end(), holder) != granted.end());
      BOOST_TEST(sidecar_inode(pack) == inodes[holder]);
      grants += static_cast<int>(granted.size());

      // Every robbed one is told; the holder is not.
      const auto told = [](Process& process, std::vector<std::string>& seen) {
        if (find_line(seen, "event hijacked").empty() && !process.wait_for("event hijacked")) {
          return false;
        }
        process.write_line("lost");
        return answer(process, seen) == "lost yes";
      };
      std::vector<std::string> first_events;
      BOOST_TEST(told(first, first_events), "the first holder");
      for (const std::size_t i : granted) {
        if (i != holder) BOOST_TEST(told(stealers[i], events[i]), "stealer " << i);
      }
      stealers[holder].write_line("lost");
      BOOST_TEST(answer(stealers[holder], events[holder]) == "lost no");
      BOOST_TEST(find_line(events[holder], "event ").empty(), find_line(events[holder], "event "));

      first.write_line("release");
      BOOST_TEST(answer(first) == "result hijacked");
      for (const std::size_t i : granted) {
        stealers[i].write_line("release");
        BOOST_TEST(answer(stealers[i]) == (i == holder ? "result ok" : "result hijacked"),
                   "stealer " << i);
      }
      BOOST_TEST(flock_nonblocking(pack / ".grex-lock") == 0);
    }
  }
  BOOST_TEST_MESSAGE(grants << " steals granted to " << stealers.size() << " stealers in "
                            << kStormRounds << " rounds");
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
