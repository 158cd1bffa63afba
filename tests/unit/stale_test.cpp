// Stale locks with real processes, real SIGSTOP/SIGCONT and real flock(1):
// diagnosis (observe) says stale for a stopped holder with a record, held
// for a foreign one; recovery robs a stopped holder under `mtime` only,
// never a holder this host shows under `safe`; of many concurrent
// recoverers exactly one unlinks, and only the stale inode; a reader uses
// the holder's recorded period; skewed mtimes are neither fresh forever
// nor stale early.

#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <string>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "stale.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

// The events of a logger, thread-safe.
struct Events {
  std::mutex mutex;
  std::vector<LogEvent> seen;

  Logger logger() {
    return [this](const LogEvent& event) {
      std::lock_guard lock(mutex);
      seen.push_back(event);
    };
  }
  std::vector<LogEvent> of(LogEventKind kind) {
    std::lock_guard lock(mutex);
    std::vector<LogEvent> found;
    for (const LogEvent& e : seen) {
      if (e.kind == kind) found.push_back(e);
    }
    return found;
  }
};

struct StaleFixture {
  TempDir dir;
  fs::path pack = dir / "pack";
  fs::path sidecar = pack / ".grex-lock";
  Events events;

  LockOptions options(StalePolicy policy, std::chrono::milliseconds stale_after = 300ms) {
    LockOptions o;
    o.heartbeat = 50ms;
    o.stale_after = stale_after;
    o.stale_policy = policy;
    o.logger = events.logger();
    return o;
  }

  // A holder that heartbeats every 50 ms (stale after 300 ms), stopped: its
  // mtime ages from now on. Returns it with the inode it holds.
  std::pair<Process, ino_t> stopped_holder() {
    Process holder = Process::child({"agent", pack.string(), "heartbeat=50", "stale=300"});
    holder.write_line("acquire");
    const auto locked = holder.wait_for("locked");
    BOOST_REQUIRE(locked.has_value());
    // Every thread stopped, so that no beat in flight refreshes the mtime
    // after a test has set it.
    holder.stop();
    return {std::move(holder), inode_in(*locked)};
  }

  // Waits until diagnosis calls the lock stale (the stopped holder's mtime
  // has aged past 300 ms).
  void until_stale() {
    PackObservation last;
    std::error_code ec;
    const bool stale = eventually([&] {
      last = observe(pack, 300ms, ec);
      return last.state == PackState::stale;
    });
    BOOST_REQUIRE_MESSAGE(stale, "never stale: " << describe(last, ec));
  }

  // What diagnosis saw, for a failure message.
  static std::string describe(const PackObservation& seen, std::error_code ec) {
    std::ostringstream text;
    text << "state " << to_string(seen.state) << ", error '" << ec.message() << "', holders";
    for (const LockParty& holder : seen.holders) {
      text << ' ' << holder.pid << (holder.exited ? " (exited)" : "");
    }
    text << ", record pid " << (seen.record ? std::to_string(seen.record->pid) : "none")
         << ", owner " << (seen.owner ? "believed" : "not believed") << ", age "
         << (seen.heartbeat_age ? std::to_string(seen.heartbeat_age->count() / 1'000'000) + " ms"
                                : "unknown")
         << (seen.mtime_skewed ? " (skewed)" : "") << ", period "
         << seen.stale_period.count() / 1'000'000 << " ms";
    return text.str();
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(stale)

BOOST_FIXTURE_TEST_CASE(a_stopped_holder_is_stale_but_not_robbed_under_safe, StaleFixture) {
  auto [holder, inode] = stopped_holder();
  until_stale();
  const PackObservation seen = observe(pack, ObserveOptions{".grex-lock", 300ms, false});
  BOOST_REQUIRE(seen.owner.has_value());
  BOOST_TEST(seen.owner->pid == holder.pid());
  BOOST_TEST((seen.heartbeat_age && *seen.heartbeat_age > 300ms));

  const PackLock lock = PackLock::open(pack, options(StalePolicy::safe));
  std::error_code ec;
  (void)lock.acquire(Mode::exclusive, 1000ms, ec);
  BOOST_TEST((ec == errc::timeout), ec.message());
  (void)lock.try_acquire(Mode::exclusive, ec);
  BOOST_TEST((ec == errc::busy), ec.message());
  BOOST_TEST(events.of(LogEventKind::stale_recovered).empty());
  BOOST_TEST(events.of(LogEventKind::stale_not_recovered).size() == 2u);  // once per wait
  BOOST_TEST(sidecar_inode(pack) == inode);
  BOOST_TEST(flock_nonblocking(sidecar) == 1);

  holder.kill(SIGCONT);
  BOOST_TEST(eventually([&] { return observe(pack, 300ms, ec).state == PackState::held; }));
  holder.write_line("lost");
  BOOST_TEST(holder.wait_for("lost ").value_or("") == "lost no");
}

BOOST_FIXTURE_TEST_CASE(a_stopped_holder_is_recovered_under_mtime_and_told_on_sigcont, StaleFixture) {
  auto [holder, inode] = stopped_holder();
  until_stale();
  const PackLock lock = PackLock::open(pack, options(StalePolicy::mtime));
  std::error_code ec;
  PackLockHold hold = lock.acquire(Mode::exclusive, 5s, ec);
  BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  const auto recovered = events.of(LogEventKind::stale_recovered);
  BOOST_REQUIRE(recovered.size() == 1u);
  BOOST_TEST(recovered.front().message.find("inode " + std::to_string(inode) + ",") != std::string::npos,
             recovered.front().message);
  BOOST_TEST(sidecar_inode(pack) != inode);
  const PackObservation seen = observe(pack, 300ms, ec);
  BOOST_REQUIRE(seen.holders.size() == 1u);
  BOOST_TEST(seen.holders.front().pid == ::getpid());

  holder.kill(SIGCONT);
  BOOST_TEST(holder.wait_for("event hijacked").has_value());
  BOOST_TEST(holder.wait_for("on_lost").has_value());
  BOOST_TEST(hold.held());
  BOOST_TEST(!hold.lost());
}

BOOST_FIXTURE_TEST_CASE(try_acquire_recovers_a_stale_lock_at_once, StaleFixture) {
  auto [holder, inode] = stopped_holder();
  until_stale();
  const PackLock lock = PackLock::open(pack, options(StalePolicy::mtime));
  std::error_code ec;
  PackLockHold hold = lock.try_acquire(Mode::exclusive, ec);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(hold.held());
  BOOST_TEST(events.of(LogEventKind::stale_recovered).size() == 1u);
  BOOST_TEST(sidecar_inode(pack) != inode);
}

BOOST_FIXTURE_TEST_CASE(a_flock_1_holder_is_never_robbed_under_safe, StaleFixture) {
  fs::create_directories(pack);
  // The record of an earlier packlock holder that died without releasing,
  // then flock(1) holds, with an old mtime.
  {
    Process earlier = Process::child({"hold", pack.string(), "exclusive"});
    earlier.expect_line("locked");
    earlier.kill(SIGKILL);
    earlier.wait();
  }
  Process holder = Process::flock_holder(sidecar);
  holder.expect_line("locked");
  set_mtime(sidecar, -3600s);
  std::error_code ec;
  const PackObservation seen = observe(pack, 300ms, ec);
  BOOST_TEST((seen.state == PackState::held));  // no promise to heartbeat: never stale
  BOOST_TEST(!seen.owner.has_value());          // the record describes nobody
  BOOST_TEST(seen.record.has_value());
  BOOST_TEST((seen.heartbeat_age && *seen.heartbeat_age > 3000s));

  const PackLock lock = PackLock::open(pack, options(StalePolicy::safe));
  (void)lock.acquire(Mode::exclusive, 800ms, ec);
  BOOST_TEST((ec == errc::timeout), ec.message());
  BOOST_TEST(events.of(LogEventKind::stale_recovered).empty());
  BOOST_TEST(events.of(LogEventKind::stale_not_recovered).size() == 1u);
  BOOST_TEST(flock_nonblocking(sidecar) == 1);

  // Under `mtime` the age alone decides, as in the Go package.
  const PackLock go_like = PackLock::open(pack, options(StalePolicy::mtime));
  PackLockHold hold = go_like.acquire(Mode::exclusive, 5s, ec);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(events.of(LogEventKind::stale_recovered).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(many_recoverers_of_one_stale_lock_end_with_one_holder, StaleFixture) {
  auto [holder, stale_inode] = stopped_holder();
  // Stale for the recoverers' minute a second from now: they all find it
  // busy, then judge it stale at about the same moment, a storm. A winner's
  // heartbeat has a minute, so no stall of a loaded machine makes it look
  // stale to the others (under `mtime` a stalled holder is robbed).
  set_mtime(sidecar, -59s);
  constexpr int kRecoverers = 8;
  std::vector<Process> recoverers;
  for (int i = 0; i < kRecoverers; ++i) {
    recoverers.push_back(Process::child({"agent", pack.string(), "heartbeat=50", "stale=60000",
                                         "policy=mtime", "timeout=20000"}));
  }
  for (Process& recoverer : recoverers) recoverer.write_line("acquire");
  // One at a time they get the lock; whoever holds is alone.
  std::set<std::size_t> served;
  const auto limit = std::chrono::steady_clock::now() + 60s;  // against hanging only
  while (served.size() < recoverers.size()) {
    BOOST_REQUIRE(std::chrono::steady_clock::now() < limit);
    std::optional<std::size_t> holding;
    for (std::size_t i = 0; i < recoverers.size() && !holding; ++i) {
      if (served.count(i)) continue;
      if (recoverers[i].wait_for("locked", 20ms)) holding = i;
    }
    if (!holding) continue;
    std::error_code ec;
    const PackObservation seen = observe(pack, 300ms, ec);
    BOOST_REQUIRE_MESSAGE(seen.holders.size() == 1u, [&] {
      // What each recoverer said so far, to tell a second recovery from a
      // lost hold when this fails.
      std::string text = std::to_string(seen.holders.size()) + " holders (" + ec.message() +
                         "), sidecar inode " + std::to_string(sidecar_inode(pack)) + ";";
      for (const LockParty& party : seen.holders) text += " holder " + std::to_string(party.pid);
      for (Process& recoverer : recoverers) {
        text += "\n  " + std::to_string(recoverer.pid()) + ":";
        for (const std::string& line : recoverer.passed_over()) text += " [" + line + "]";
      }
      return text;
    }());
    BOOST_TEST(seen.holders.front().pid == recoverers[*holding].pid());
    BOOST_TEST(sidecar_inode(pack) != stale_inode);
    served.insert(*holding);
    recoverers[*holding].write_line("release");
    BOOST_REQUIRE(recoverers[*holding].wait_for("released"));
  }
  // Exactly one of them recovered, and what it unlinked was the stale inode.
  int recoveries = 0;
  for (Process& recoverer : recoverers) {
    for (const std::string& line : recoverer.passed_over()) {
      if (line.rfind("event stale_recovered", 0) != 0) continue;
      ++recoveries;
      BOOST_TEST(line.find("inode " + std::to_string(stale_inode) + ",") != std::string::npos, line);
    }
  }
  BOOST_TEST(recoveries == 1);
  holder.kill(SIGCONT);
  BOOST_TEST(holder.wait_for("on_lost").has_value());
}

// /proc/locks is handed out a page per read, and locks that come and go
// between reads shift the rest: one pass over a long table can list a
// holder twice or not at all. Observing (and the `safe` policy's look at
// the table) must still see the one holder, once.
BOOST_FIXTURE_TEST_CASE(a_long_changing_lock_table_shows_the_holder_once, StaleFixture) {
  // The table is a list per CPU, newest lock first, the CPUs in turn: the
  // holder locks on the last CPU, then 150 locks taken on each CPU put its
  // lock pages into the table, and a churner on each CPU keeps adding and
  // removing locks before it.
  std::vector<int> cpus;
  cpu_set_t all;
  BOOST_REQUIRE(::sched_getaffinity(0, sizeof all, &all) == 0);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &all)) cpus.push_back(cpu);
  }
  const auto only_on = [](pid_t pid, int cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return ::sched_setaffinity(pid, sizeof one, &one) == 0;
  };
  Process holder = Process::child({"agent", pack.string()});
  BOOST_REQUIRE(only_on(holder.pid(), cpus.back()));
  holder.write_line("acquire");
  BOOST_REQUIRE(holder.wait_for("locked"));
  std::vector<detail::UniqueFd> fillers;
  for (const int cpu : cpus) {
    BOOST_REQUIRE(only_on(0, cpu));
    for (int i = 0; i < 150; ++i) {
      const fs::path file = dir / ("filler" + std::to_string(cpu) + "-" + std::to_string(i));
      fillers.emplace_back(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
      BOOST_REQUIRE(fillers.back());
      BOOST_REQUIRE(::flock(fillers.back().get(), LOCK_EX) == 0);
    }
  }
  BOOST_REQUIRE(::sched_setaffinity(0, sizeof all, &all) == 0);
  std::vector<Process> churners;
  for (const int cpu : cpus) {
    churners.push_back(Process::child({"lock_table_churn", dir.path().string()}));
    BOOST_REQUIRE(churners.back().wait_for("started"));
    BOOST_REQUIRE(only_on(churners.back().pid(), cpu));
  }
  int wrong = 0;
  std::string example;
  constexpr int kObservations = 300;
  for (int i = 0; i < kObservations; ++i) {
    std::error_code ec;
    const PackObservation seen = observe(pack, 300ms, ec);
    if (!ec && seen.holders.size() == 1u && seen.holders.front().pid == holder.pid()) continue;
    if (wrong++ == 0) example = std::to_string(seen.holders.size()) + " holders, " + ec.message();
  }
  BOOST_TEST(wrong == 0,
             wrong << " of " << kObservations << " observations wrong, the first: " << example);
  struct stat st {};
  BOOST_REQUIRE(::stat(sidecar.c_str(), &st) == 0);
  BOOST_TEST(detail::held_on_this_host(st.st_dev, st.st_ino));
}

BOOST_FIXTURE_TEST_CASE(waiters_of_other_processes_follow_a_recovered_sidecar, StaleFixture) {
  auto [holder, stale_inode] = stopped_holder();
  // A waiter that would not recover for 100 s: it waits on the stale inode.
  Process waiter = Process::child({"agent", pack.string(), "heartbeat=50", "stale=100000",
                                   "policy=mtime", "timeout=20000"});
  waiter.write_line("acquire");
  BOOST_REQUIRE(eventually([&] {
    std::error_code ec;
    for (const LockParty& party : observe(pack, 300ms, ec).waiters) {
      if (party.pid == waiter.pid()) return true;
    }
    return false;
  }));
  until_stale();
  const PackLock lock = PackLock::open(pack, options(StalePolicy::mtime));
  auto recovering = std::async(std::launch::async, [&] {
    std::error_code ec;
    PackLockHold hold = lock.acquire(Mode::exclusive, 10s, ec);
    return std::make_pair(std::move(hold), ec);
  });
  // The unlink wakes the waiter off the old inode: whichever of the two
  // takes the new sidecar first, the other gets it after.
  std::optional<std::string> waiter_locked;
  const auto limit = std::chrono::steady_clock::now() + 20s;  // against hanging only
  while (!waiter_locked && recovering.wait_for(0s) != std::future_status::ready) {
    BOOST_REQUIRE(std::chrono::steady_clock::now() < limit);
    waiter_locked = waiter.wait_for("locked", 20ms);
  }
  if (waiter_locked) {
    waiter.write_line("release");
    BOOST_REQUIRE(waiter.wait_for("released"));
  }
  auto [hold, ec] = recovering.get();
  BOOST_REQUIRE_MESSAGE(!ec, ec.message());
  const ino_t recovered_inode = sidecar_inode(pack);
  BOOST_TEST(recovered_inode != stale_inode);
  BOOST_TEST(events.of(LogEventKind::stale_recovered).size() == 1u);
  if (!waiter_locked) {
    hold.release();
    waiter_locked = waiter.wait_for("locked");
  }
  BOOST_REQUIRE(waiter_locked.has_value());
  BOOST_TEST(inode_in(*waiter_locked) == recovered_inode);
  holder.kill(SIGCONT);
}

BOOST_FIXTURE_TEST_CASE(a_reader_uses_the_holder_s_recorded_period, StaleFixture) {
  // The holder heartbeats every second and is stale only after 5 s.
  Process holder = Process::child({"agent", pack.string(), "heartbeat=1000", "stale=5000"});
  holder.write_line("acquire");
  BOOST_REQUIRE(holder.wait_for("locked"));
  holder.stop();  // no beat in flight after the mtime is set
  set_mtime(sidecar, -2s);
  // An impatient reader (300 ms) must not judge it by its own period.
  const PackLock lock = PackLock::open(pack, options(StalePolicy::mtime));
  std::error_code ec;
  (void)lock.acquire(Mode::exclusive, 600ms, ec);
  BOOST_TEST((ec == errc::timeout), ec.message());
  BOOST_TEST(events.of(LogEventKind::stale_recovered).empty());
  PackObservation seen = observe(pack, 300ms, ec);
  BOOST_TEST((seen.state == PackState::held));
  BOOST_TEST(seen.stale_period.count() == std::chrono::nanoseconds(5s).count());
  // Past the holder's own period it is stale to everybody.
  set_mtime(sidecar, -6s);
  seen = observe(pack, 300ms, ec);
  BOOST_TEST((seen.state == PackState::stale));
  PackLockHold hold = lock.acquire(Mode::exclusive, 5s, ec);
  BOOST_TEST(!ec, ec.message());
  holder.kill(SIGCONT);
  BOOST_TEST(holder.wait_for("on_lost").has_value());
}

BOOST_FIXTURE_TEST_CASE(a_skewed_mtime_is_neither_fresh_forever_nor_stale_at_once, StaleFixture) {
  auto [holder, inode] = stopped_holder();
  set_mtime(sidecar, 3600s);
  std::error_code ec;
  PackObservation seen = observe(pack, 300ms, ec);
  BOOST_TEST(seen.mtime_skewed);
  BOOST_TEST((seen.state == PackState::held));
  BOOST_TEST((seen.heartbeat_age && *seen.heartbeat_age < -3000s));
  set_mtime(sidecar, -3600s);
  seen = observe(pack, 300ms, ec);
  BOOST_TEST(!seen.mtime_skewed);
  BOOST_TEST((seen.state == PackState::stale));

  // An acquirer watches a skewed mtime: unchanged for a stale period, it
  // is stale.
  set_mtime(sidecar, 3600s);
  const PackLock lock = PackLock::open(pack, options(StalePolicy::mtime));
  const auto start = std::chrono::steady_clock::now();
  PackLockHold hold = lock.acquire(Mode::exclusive, 5s, ec);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 300ms));
  BOOST_TEST(events.of(LogEventKind::stale_recovered).size() == 1u);
  BOOST_TEST(sidecar_inode(pack) != inode);
  holder.kill(SIGCONT);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(diagnosis)

BOOST_AUTO_TEST_CASE(observing_creates_nothing) {
  TempDir dir;
  fs::create_directory(dir / "empty");
  for (const bool try_lock : {false, true}) {
    const PackObservation seen = observe(dir / "empty", ObserveOptions{".grex-lock", 30s, try_lock});
    BOOST_TEST(!seen.sidecar_exists);
    BOOST_TEST((seen.state == PackState::free));
    BOOST_TEST(fs::is_empty(dir / "empty"));
  }
  std::error_code ec;
  (void)observe(dir / "missing", 30s, ec);
  BOOST_TEST((ec == std::errc::no_such_file_or_directory));
  BOOST_TEST(!fs::exists(dir / "missing"));
}

BOOST_AUTO_TEST_CASE(a_free_pack_and_a_held_one) {
  PackDir dir;
  std::error_code ec;
  PackObservation seen = observe(dir.pack, 30s, ec);
  BOOST_TEST(!ec);
  BOOST_TEST((seen.state == PackState::free));
  BOOST_TEST(seen.links == 1u);
  BOOST_TEST(!seen.network_filesystem);
  PackLockHold hold = dir.lock.acquire();
  seen = observe(dir.pack);
  BOOST_TEST((seen.state == PackState::held));
  BOOST_REQUIRE(seen.owner.has_value());
  BOOST_TEST(seen.owner->pid == ::getpid());
  BOOST_TEST((seen.heartbeat_age && *seen.heartbeat_age >= 0s && *seen.heartbeat_age < 30s));
  BOOST_TEST(!seen.mtime_skewed);
}

BOOST_AUTO_TEST_CASE(a_record_is_believed_only_for_a_holder_in_its_mode) {
  PackDir dir;
  std::string left;
  {
    PackLockHold exclusive = dir.lock.acquire(Mode::exclusive);
    left = read_file(dir.lock.sidecar());
  }
  // As a holder that died before its release blanked the record leaves it.
  write_file(dir.lock.sidecar(), left);
  // The same process now holds shared: the exclusive record is an old one.
  PackLockHold shared = dir.lock.acquire(Mode::shared);
  const PackObservation seen = observe(dir.pack);
  BOOST_TEST((seen.state == PackState::held));
  BOOST_TEST(seen.record.has_value());
  BOOST_TEST(!seen.owner.has_value());
}

BOOST_AUTO_TEST_CASE(a_hard_linked_copy_shares_the_sidecar) {
  PackDir dir;
  fs::create_directory(dir.dir / "copy");
  fs::create_hard_link(dir.lock.sidecar(), dir.dir / "copy" / ".grex-lock");  // as `cp -al` does
  const PackObservation original = observe(dir.pack);
  const PackObservation copy = observe(dir.dir / "copy");
  BOOST_TEST(original.links == 2u);
  BOOST_TEST(copy.links == 2u);
  BOOST_TEST(copy.inode == original.inode);
  PackLockHold hold = dir.lock.acquire();
  BOOST_TEST((observe(dir.dir / "copy").state == PackState::held));
}

BOOST_AUTO_TEST_CASE(try_lock_confirms_a_holder_the_table_shows) {
  PackDir dir;
  Process holder = Process::child({"hold", dir.pack.string(), "exclusive"});
  holder.expect_line("locked");
  const PackObservation seen = observe(dir.pack, ObserveOptions{".grex-lock", 30s, true});
  BOOST_TEST((seen.state == PackState::held));
  BOOST_TEST(!seen.held_elsewhere);  // the table shows it here
  holder.close_stdin();
  BOOST_TEST(holder.exit_code() == kChildOk);
  const PackObservation free = observe(dir.pack, ObserveOptions{".grex-lock", 30s, true});
  BOOST_TEST((free.state == PackState::free));
  BOOST_TEST(!free.held_elsewhere);
}

// The process that took a lock exits while a descriptor it passed on keeps
// the lock: observe() says the holder exited and names the keeper, the lock
// stays held, and `safe` recovery never robs it.
BOOST_AUTO_TEST_CASE(an_orphaned_lock_names_its_keeper_and_is_never_robbed) {
  TempDir dir;
  const fs::path pack = dir / "pack";
  fs::create_directories(pack);
  Process keeper({"sh", "-c", "exec 9>>\"$0/.grex-lock\"; flock 9; echo locked; exec sleep 300",
                  pack.string()});
  keeper.expect_line("locked");
  const PackObservation seen = observe(pack);
  BOOST_TEST((seen.state == PackState::held));
  BOOST_REQUIRE(seen.holders.size() == 1u);
  BOOST_TEST(seen.holders.front().exited);
  BOOST_TEST(seen.holders.front().pid != keeper.pid());
  BOOST_TEST((seen.keepers == std::vector<pid_t>{keeper.pid()}));
  BOOST_TEST(!seen.owner.has_value());
  LockOptions options;
  options.stale_after = 30ms;
  std::error_code ec;
  (void)PackLock::open(pack, options).acquire(Mode::exclusive, 300ms, ec);
  BOOST_TEST((ec == errc::timeout), ec.message());
  BOOST_TEST(flock_nonblocking(pack / ".grex-lock") == 1);
  // A live holder is not called exited, and nobody is searched for.
  keeper.kill(SIGKILL);
  keeper.wait();
  Process live = Process::flock_holder(pack / ".grex-lock");
  live.expect_line("locked");
  const PackObservation alive = observe(pack);
  BOOST_REQUIRE(alive.holders.size() == 1u);
  BOOST_TEST(!alive.holders.front().exited);
  BOOST_TEST(alive.keepers.empty());
}

BOOST_AUTO_TEST_SUITE_END()
