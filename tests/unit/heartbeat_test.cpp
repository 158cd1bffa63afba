// The heartbeat service: one thread for every hold of the process, mtimes
// kept fresh, refresh failures reported without stopping it, hijacks
// (unlink, replacement) reported at once and once, a silent default logger,
// and callbacks free to release the hold.

#include <fcntl.h>
#include <sys/inotify.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <csignal>
#include <sstream>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "heartbeat.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

// The log events of a PackLock, for assertions from the test thread.
class EventLog {
 public:
  Logger logger() {
    return [this](const LogEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      changed_.notify_all();
    };
  }
  std::size_t count(LogEventKind kind) {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count_if(
        events_.begin(), events_.end(), [&](const LogEvent& e) { return e.kind == kind; }));
  }
  // Waits (with a safety limit) until `n` events of `kind` arrived.
  bool wait_for(LogEventKind kind, std::size_t n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] {
      return static_cast<std::size_t>(std::count_if(events_.begin(), events_.end(), [&](const LogEvent& e) {
               return e.kind == kind;
             })) >= n;
    });
  }
  std::vector<LogEvent> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<LogEvent> events_;
};

std::chrono::system_clock::time_point mtime_of(const fs::path& file) {
  struct stat st {};
  BOOST_REQUIRE(::stat(file.c_str(), &st) == 0);
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

LockOptions fast_options(EventLog* log = nullptr) {
  LockOptions options;
  options.heartbeat = 20ms;
  options.stale_after = 300ms;
  if (log) options.logger = log->logger();
  return options;
}

struct HeartbeatFixture {
  TempDir dir;
  fs::path pack = dir / "pack";
  EventLog log;
};

// Fails the first `failures` refreshes with EIO, then refreshes for real.
std::atomic<int> failures_left{0};
int failing_refresh(int fd) noexcept {
  if (failures_left.fetch_sub(1) > 0) return EIO;
  return detail::refresh_mtime(fd);
}

struct RefreshFailures {
  explicit RefreshFailures(int n) {
    failures_left = n;
    detail::set_refresh_function_for_testing(failing_refresh);
  }
  ~RefreshFailures() { detail::set_refresh_function_for_testing(nullptr); }
};

// A Beater that counts its beats, and stops being alive when told.
class CountingBeater final : public detail::Beater {
 public:
  int beats() {
    std::lock_guard lock(mutex_);
    return beats_;
  }
  bool wait_for(int count) {
    std::unique_lock lock(mutex_);
    return beaten_.wait_for(lock, 10s, [&] { return beats_ >= count; });
  }
  void stay_alive(bool alive) {
    std::lock_guard lock(mutex_);
    alive_ = alive;
  }

 private:
  bool beat(std::function<void()>&) noexcept override {
    std::lock_guard lock(mutex_);
    ++beats_;
    beaten_.notify_all();
    return alive_;
  }

  std::mutex mutex_;
  std::condition_variable beaten_;
  int beats_ = 0;
  bool alive_ = true;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(heartbeat)

BOOST_AUTO_TEST_CASE(a_beater_is_beaten_every_period_until_removed) {
  const auto service = detail::HeartbeatService::shared();
  CountingBeater beater;
  BOOST_REQUIRE(service->add(beater, 20ms));
  BOOST_TEST(beater.wait_for(3));
  service->remove(beater);
  const int after_removal = beater.beats();
  // remove() returned with no beat in flight, and none comes after it: a
  // beat would have to be scheduled within these periods.
  std::this_thread::sleep_for(100ms);
  BOOST_TEST(beater.beats() == after_removal);
}

BOOST_AUTO_TEST_CASE(beat_soon_beats_at_once_and_a_lost_beater_rests) {
  const auto service = detail::HeartbeatService::shared();
  CountingBeater beater;
  BOOST_REQUIRE(service->add(beater, std::chrono::hours(1)));
  BOOST_TEST(beater.beats() == 0);
  service->beat_soon(beater);
  BOOST_TEST(beater.wait_for(1));
  // Its beat says it is lost: later requests beat it no more.
  beater.stay_alive(false);
  service->beat_soon(beater);
  BOOST_TEST(beater.wait_for(2));
  service->beat_soon(beater);
  std::this_thread::sleep_for(100ms);
  BOOST_TEST(beater.beats() == 2);
  service->remove(beater);
}

// Threads of this process that are heartbeat threads.
int heartbeat_threads() { return threads_named(detail::kHeartbeatThreadName); }

// Besides the heartbeat thread, no thread may appear; a sanitizer's own
// background thread may, so there only the heartbeat threads are counted.
#ifdef __SANITIZE_THREAD__
constexpr bool kCountAllThreads = false;
#else
constexpr bool kCountAllThreads = true;
#endif

BOOST_FIXTURE_TEST_CASE(one_thread_beats_every_hold_of_the_process, HeartbeatFixture) {
  BOOST_REQUIRE(eventually([] { return heartbeat_threads() == 0; }));
  const int before = thread_count();
  {
    std::vector<PackLock> locks;
    std::vector<PackLockHold> holds;
    std::vector<std::chrono::system_clock::time_point> acquired_mtimes;
    for (int i = 0; i < 300; ++i) {
      locks.push_back(PackLock::open(dir / ("pack" + std::to_string(i)), fast_options()));
      holds.push_back(locks.back().try_acquire());
      acquired_mtimes.push_back(mtime_of(locks.back().sidecar()));
    }
    BOOST_TEST(heartbeat_threads() == 1);
    if (kCountAllThreads) BOOST_TEST(thread_count() == before + 1);
    // Every hold is refreshed after its acquisition.
    for (std::size_t i = 0; i < locks.size(); ++i) {
      BOOST_TEST(eventually([&] { return mtime_of(locks[i].sidecar()) > acquired_mtimes[i]; }),
                 "hold " << i << " never refreshed");
    }
    BOOST_TEST(heartbeat_threads() == 1);
  }
  // The last PackLock gone, the thread is stopped and joined.
  BOOST_TEST(eventually([&] { return heartbeat_threads() == 0; }));
  if (kCountAllThreads) BOOST_TEST(eventually([&] { return thread_count() == before; }));
}

// A signal sent to the process is the application's: the heartbeat thread
// blocks them all, so that none waits there (a SIGCHLD that packlock run
// waits for, say).
BOOST_FIXTURE_TEST_CASE(the_heartbeat_thread_blocks_every_signal, HeartbeatFixture) {
  const PackLock lock = PackLock::open(dir / "pack", fast_options());
  PackLockHold hold = lock.acquire();
  std::string blocked;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    if (read_file(task.path() / "comm") != std::string(detail::kHeartbeatThreadName) + "\n") {
      continue;
    }
    std::istringstream status(read_file(task.path() / "status"));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("SigBlk:", 0) == 0) blocked = line.substr(line.find_first_not_of(" \t", 7));
    }
  }
  BOOST_REQUIRE(!blocked.empty());
  const unsigned long long mask = std::stoull(blocked, nullptr, 16);
  for (const int signal : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGALRM}) {
    BOOST_TEST((mask >> (signal - 1) & 1) == 1, "signal " << signal << " not blocked");
  }
}

BOOST_FIXTURE_TEST_CASE(a_heartbeat_does_not_wake_waiters, HeartbeatFixture) {
  // Refreshing the mtime alone is IN_MODIFY, which waiters do not watch.
  const PackLock lock = PackLock::open(pack, fast_options());
  PackLockHold hold = lock.acquire();
  const int inotify = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  BOOST_REQUIRE(inotify >= 0);
  BOOST_REQUIRE(::inotify_add_watch(inotify, lock.sidecar().c_str(),
                                    IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_ATTRIB |
                                        IN_DELETE_SELF | IN_MOVE_SELF | IN_MODIFY) >= 0);
  // Two refreshes later, the only events are modifications.
  const auto start = mtime_of(lock.sidecar());
  BOOST_REQUIRE(eventually([&] { return mtime_of(lock.sidecar()) > start; }));
  alignas(inotify_event) char buffer[4096];
  const ssize_t n = ::read(inotify, buffer, sizeof buffer);
  BOOST_REQUIRE(n > 0);
  for (ssize_t at = 0; at < n;) {
    const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
    BOOST_TEST(event->mask == static_cast<std::uint32_t>(IN_MODIFY));
    at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
  }
  ::close(inotify);
}

// Heartbeat 50 ms, stale after 800 ms: a margin that a loaded machine (a
// sanitizer run on two cores) does not eat up.
BOOST_FIXTURE_TEST_CASE(a_long_hold_stays_fresh_and_nobody_recovers_it, HeartbeatFixture) {
  Process holder = Process::child({"agent", pack.string(), "heartbeat=50", "stale=800"});
  holder.write_line("acquire");
  BOOST_REQUIRE(holder.wait_for("locked"));
  const auto acquired_mtime = mtime_of(pack / ".grex-lock");
  LockOptions impatient = fast_options(&log);
  impatient.stale_after = 800ms;
  impatient.stale_policy = StalePolicy::mtime;  // the mtime alone would decide
  const PackLock lock = PackLock::open(pack, impatient);
  std::error_code ec;
  // Two stale periods of waiting: had the holder stopped heartbeating, the
  // lock would have been recovered after one.
  (void)lock.acquire(Mode::exclusive, 1600ms, ec);
  BOOST_TEST((ec == errc::timeout), ec.message());
  BOOST_TEST(log.count(LogEventKind::stale_recovered) == 0u);
  BOOST_TEST((mtime_of(pack / ".grex-lock") > acquired_mtime));
  const PackObservation seen = observe(pack, 800ms, ec);
  BOOST_TEST((seen.state == PackState::held));
  BOOST_REQUIRE(seen.owner.has_value());
  BOOST_TEST(seen.owner->pid == holder.pid());
  BOOST_TEST((seen.heartbeat_age && *seen.heartbeat_age < 800ms));
  holder.write_line("lost");
  BOOST_TEST(holder.wait_for("lost ").value_or("") == "lost no");
}

BOOST_AUTO_TEST_CASE(a_hold_on_tmpfs_stays_fresh) {
  // Filesystems stamp mtimes with different precision; tmpfs is the other
  // one at hand besides the ext4 of the other tests.
  struct statfs fs_info {};
  if (::statfs("/dev/shm", &fs_info) != 0 || fs_info.f_type != TMPFS_MAGIC) {
    BOOST_TEST_MESSAGE("no tmpfs at /dev/shm: skipped");
    return;
  }
  TempDir dir("/dev/shm");
  const fs::path pack = dir / "pack";
  Process holder = Process::child({"agent", pack.string(), "heartbeat=50", "stale=800"});
  holder.write_line("acquire");
  BOOST_REQUIRE(holder.wait_for("locked"));
  EventLog log;
  LockOptions options = fast_options(&log);
  options.stale_after = 800ms;
  options.stale_policy = StalePolicy::mtime;
  std::error_code ec;
  (void)PackLock::open(pack, options).acquire(Mode::exclusive, 1600ms, ec);
  BOOST_TEST((ec == errc::timeout), ec.message());
  BOOST_TEST(log.count(LogEventKind::stale_recovered) == 0u);
  const PackObservation seen = observe(pack, 800ms, ec);
  BOOST_TEST((seen.state == PackState::held));
  BOOST_TEST((seen.heartbeat_age && *seen.heartbeat_age < 800ms));
}

BOOST_FIXTURE_TEST_CASE(an_unlinked_sidecar_is_a_hijack_reported_at_once_and_once, HeartbeatFixture) {
  LockOptions options = fast_options(&log);
  options.heartbeat = 30s;  // inotify, not a beat, must tell
  options.stale_after = 90s;
  const PackLock lock = PackLock::open(pack, options);
  PackLockHold hold = lock.acquire();
  std::atomic<int> calls{0};
  std::promise<void> told;
  hold.on_lost([&] {
    if (calls++ == 0) told.set_value();
  });
  BOOST_TEST(!hold.lost());
  fs::remove(lock.sidecar());
  BOOST_REQUIRE(told.get_future().wait_for(10s) == std::future_status::ready);
  BOOST_TEST(hold.lost());
  BOOST_TEST(log.count(LogEventKind::hijacked) == 1u);
  BOOST_TEST(log.events().front().pack == lock.pack());
  // A callback set after the loss runs at once, on this thread.
  std::thread::id ran_on;
  hold.on_lost([&] { ran_on = std::this_thread::get_id(); });
  BOOST_TEST((ran_on == std::this_thread::get_id()));
  BOOST_TEST(!hold.release());
  BOOST_TEST(calls == 1);
  BOOST_TEST(log.count(LogEventKind::hijacked) == 1u);
}

// inotify marks this process has on `inode`, over all its inotify
// instances (the "inotify wd:" lines of their fdinfo name the inode in hex).
int inotify_marks_on(ino_t inode) {
  std::ostringstream hex;
  hex << " ino:" << std::hex << inode << ' ';
  int marks = 0;
  for (const auto& fd : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(fd.path(), ec) != "anon_inode:inotify" || ec) continue;
    std::istringstream info(read_file(fs::path("/proc/self/fdinfo") / fd.path().filename()));
    for (std::string line; std::getline(info, line);) {
      marks += line.rfind("inotify wd:", 0) == 0 && line.find(hex.str()) != std::string::npos;
    }
  }
  return marks;
}

// A process that ever had an inotify mark waits for its teardown when it
// exits: a young hold has none; one that lasts gets it from the thread.
BOOST_FIXTURE_TEST_CASE(a_young_hold_has_no_inotify_watch_a_lasting_one_has, HeartbeatFixture) {
  LockOptions options = fast_options(&log);
  options.heartbeat = 30s;
  options.stale_after = 90s;
  const PackLock lock = PackLock::open(pack, options);
  const auto start = std::chrono::steady_clock::now();
  PackLockHold hold = lock.acquire();
  const ino_t inode = sidecar_inode(pack);
  const int young_marks = inotify_marks_on(inode);
  // Only when the test itself was not held up past the delay.
  if (std::chrono::steady_clock::now() - start < detail::kWatchDelay) BOOST_TEST(young_marks == 0);
  BOOST_TEST(eventually([&] { return inotify_marks_on(inode) == 1; }));
  BOOST_TEST(!hold.lost());
}

BOOST_FIXTURE_TEST_CASE(a_replaced_sidecar_is_a_hijack, HeartbeatFixture) {
  LockOptions options = fast_options(&log);
  options.heartbeat = 30s;
  options.stale_after = 90s;
  const PackLock lock = PackLock::open(pack, options);
  PackLockHold hold = lock.acquire();
  std::promise<void> told;
  hold.on_lost([&] { told.set_value(); });
  write_file(dir / "replacement", "");
  fs::rename(dir / "replacement", lock.sidecar());
  BOOST_REQUIRE(told.get_future().wait_for(10s) == std::future_status::ready);
  BOOST_TEST(log.count(LogEventKind::hijacked) == 1u);
}

// The pack is its path: once the directory is renamed away, the path names
// another sidecar (or none), and the hold no longer locks the pack. No
// inotify event tells of a rename of the directory; the beat sees it.
BOOST_FIXTURE_TEST_CASE(a_pack_renamed_away_is_lost_at_the_next_beat, HeartbeatFixture) {
  const PackLock lock = PackLock::open(pack, fast_options(&log));
  PackLockHold hold = lock.acquire();
  std::promise<void> told;
  hold.on_lost([&] { told.set_value(); });
  fs::rename(pack, dir / "moved");
  fs::create_directory(pack);
  BOOST_REQUIRE(told.get_future().wait_for(10s) == std::future_status::ready);
  BOOST_TEST(log.count(LogEventKind::hijacked) == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_holder_whose_sidecar_is_removed_reports_within_a_heartbeat, HeartbeatFixture) {
  Process holder = Process::child({"agent", pack.string(), "heartbeat=100", "stale=1000"});
  holder.write_line("acquire");
  BOOST_REQUIRE(holder.wait_for("locked"));
  fs::remove(pack / ".grex-lock");
  // A second holder takes the pack through the new sidecar.
  const PackLock lock = PackLock::open(pack);
  PackLockHold hold = lock.try_acquire();
  BOOST_TEST(hold.held());
  BOOST_TEST(holder.wait_for("event hijacked").has_value());
  BOOST_TEST(holder.wait_for("on_lost").has_value());
  holder.write_line("lost");
  BOOST_TEST(holder.wait_for("lost ").value_or("") == "lost yes");
}

BOOST_FIXTURE_TEST_CASE(refresh_failures_are_logged_and_the_heartbeat_goes_on, HeartbeatFixture) {
  const PackLock lock = PackLock::open(pack, fast_options(&log));
  const RefreshFailures inject(2);
  PackLockHold hold = lock.acquire();
  BOOST_REQUIRE(log.wait_for(LogEventKind::refresh_failed, 2));
  const auto after_failures = mtime_of(lock.sidecar());
  for (const LogEvent& event : log.events()) {
    BOOST_TEST((event.kind == LogEventKind::refresh_failed));
    BOOST_TEST((event.error == std::errc::io_error));
  }
  BOOST_TEST(eventually([&] { return mtime_of(lock.sidecar()) > after_failures; }));
  BOOST_TEST(log.count(LogEventKind::refresh_failed) == 2u);
  BOOST_TEST(!hold.lost());
}

BOOST_FIXTURE_TEST_CASE(the_logger_is_silent_by_default, HeartbeatFixture) {
  fs::create_directories(pack);
  const fs::path errors = dir / "stderr";
  Process holder(with_stderr_to(errors, {self_exe(), "--child", "agent", pack.string(),
                                         "heartbeat=50", "stale=300", "logger=no"}));
  holder.write_line("acquire");
  BOOST_REQUIRE(holder.wait_for("locked"));
  fs::remove(pack / ".grex-lock");
  BOOST_TEST(holder.wait_for("on_lost").has_value());
  holder.write_line("release");
  holder.expect_line("released");
  holder.close_stdin();
  BOOST_TEST(holder.exit_code() == kChildOk);
  BOOST_TEST(holder.passed_over().empty());
  BOOST_TEST(read_file(errors).empty(), read_file(errors));
}

BOOST_FIXTURE_TEST_CASE(an_on_lost_callback_may_release_the_hold, HeartbeatFixture) {
  const PackLock lock = PackLock::open(pack, fast_options(&log));
  PackLockHold hold = lock.acquire();
  std::promise<std::error_code> released;
  hold.on_lost([&] { released.set_value(hold.release()); });
  fs::remove(lock.sidecar());
  auto result = released.get_future();
  BOOST_REQUIRE(result.wait_for(10s) == std::future_status::ready);
  BOOST_TEST(!result.get());
  BOOST_TEST(!hold.held());
  BOOST_TEST(lock.try_acquire().held());
}

BOOST_FIXTURE_TEST_CASE(a_callback_that_drops_the_last_pack_lock_ends_the_service, HeartbeatFixture) {
  // An earlier test's service, dropped on its own thread, detached that
  // thread: it may still be on its way out.
  BOOST_REQUIRE(eventually([] { return heartbeat_threads() == 0; }));
  const int before = thread_count();
  {
    auto lock = std::make_unique<PackLock>(PackLock::open(pack, fast_options()));
    auto hold = std::make_unique<PackLockHold>(lock->acquire());
    std::promise<void> dropped;
    // The service is destroyed on its own thread, which must then end.
    hold->on_lost([&] {
      hold.reset();
      lock.reset();
      dropped.set_value();
    });
    BOOST_TEST(heartbeat_threads() == 1);
    fs::remove(pack / ".grex-lock");
    BOOST_REQUIRE(dropped.get_future().wait_for(10s) == std::future_status::ready);
  }
  BOOST_TEST(eventually([&] { return heartbeat_threads() == 0; }));
  // At most as many as before, not exactly: a thread joined by an earlier
  // test may still have been listed in /proc when `before` was counted (the
  // kernel wakes the joiner before it drops the exiting task), and be gone now.
  int now = 0;
  if (kCountAllThreads)
    BOOST_TEST(eventually([&] { return (now = thread_count()) <= before; }),
               now << " threads, " << before << " before");
  // A new service starts and beats as before.
  const PackLock again = PackLock::open(pack, fast_options());
  PackLockHold hold = again.acquire();
  const auto acquired = mtime_of(again.sidecar());
  BOOST_TEST(eventually([&] { return mtime_of(again.sidecar()) > acquired; }));
}

BOOST_AUTO_TEST_CASE(a_read_only_hold_writes_nothing_but_is_still_watched) {
  if (::geteuid() != 0) return;  // needs root to switch to another user
  TempDir dir;
  fs::permissions(dir.path(), fs::perms(0755));
  const PackLock lock = PackLock::open(dir / "pack");
  fs::permissions(lock.sidecar(), fs::perms(0644));
  Process reader(child_as_nobody(dir, {"agent", (dir / "pack").string(), "heartbeat=50", "stale=300"}));
  reader.write_line("acquire");
  BOOST_REQUIRE(reader.wait_for("locked"));
  BOOST_TEST(reader.passed_over().size() == 1u);
  BOOST_TEST(reader.passed_over().front().rfind("event read_only", 0) == 0u);
  BOOST_TEST(read_file(lock.sidecar()).empty());
  fs::remove(lock.sidecar());
  BOOST_TEST(reader.wait_for("on_lost").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
