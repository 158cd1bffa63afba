// The fork contract (libpacklock(3)): in a child, a hold taken before the
// fork can only be released; a pack opened before the fork is reopened at
// its first use, with a fresh queue and its own wait state, and the child
// never hangs on what the parent's threads were doing at the fork.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

constexpr int kHung = -1;

constexpr int kThrew = 99;

// Runs `body` in a forked child and returns its exit code, or kHung when it
// has not exited within `limit` (a safety limit against a hang, which is
// what these tests look for). The child never returns into the test runner.
int in_child(const std::function<int()>& body, std::chrono::milliseconds limit = 10s) {
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    int code = kThrew;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  if (!eventually([&] { return ::waitpid(child, &status, WNOHANG) == child; }, limit)) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    return kHung;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(fork_safety)

// A parent thread holds the pack and another waits for it in this process's
// queue at the fork: the child's queue starts empty, so its try is refused
// by the kernel (busy), not by the parent's threads, and never hangs.
BOOST_FIXTURE_TEST_CASE(a_child_queues_afresh_behind_the_parents_threads, PackDir) {
  PackLockHold hold = lock.acquire();
  std::thread queued([&] { (void)lock.acquire(Mode::exclusive, 5s); });
  BOOST_REQUIRE(eventually([&] { return waiting_count(lock) == 1; }));
  const int code = in_child([&] {
    std::error_code ec;
    (void)lock.try_acquire(Mode::exclusive, ec);
    if (ec != errc::busy) return 1;
    (void)lock.acquire(Mode::exclusive, 100ms, ec);
    return ec == errc::timeout ? 0 : 2;
  });
  hold.release();
  queued.join();
  BOOST_TEST(code == 0);
}

// The child's first wait makes its own timer: the parent's, made by this
// thread's earlier wait, does not exist in the child, so a deadline there
// would never fire.
BOOST_FIXTURE_TEST_CASE(a_childs_deadline_fires_after_the_parent_waited, PackDir) {
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  std::error_code ec;
  (void)lock.acquire(Mode::exclusive, 50ms, ec);
  BOOST_REQUIRE(ec == errc::timeout);
  const int code = in_child([&] {
    std::error_code child_ec;
    (void)lock.acquire(Mode::exclusive, 100ms, child_ec);
    return child_ec == errc::timeout ? 0 : 1;
  });
  BOOST_TEST(code == 0);
}

// A hold from before the fork, released in the child, closes the child's
// copy only: the parent still holds.
BOOST_FIXTURE_TEST_CASE(a_hold_released_in_the_child_stays_the_parents, PackDir) {
  PackLockHold hold = lock.acquire();
  const int code = in_child([&] { return hold.release() ? 1 : 0; });
  BOOST_TEST(code == 0);
  BOOST_TEST(flock_nonblocking(lock.sidecar()) == 1);
  BOOST_TEST(!hold.release());
}

// A LockManager keeps its packs open; a child forked from a process that
// used it opens its own: its holds record the child's pid, and its queue
// and heartbeat are its own.
BOOST_AUTO_TEST_CASE(a_child_of_a_manager_opens_its_own_packs) {
  TempDir dir;
  const LockManager manager(dir / "locks");
  manager.release(manager.acquire("a"));
  const int code = in_child([&] {
    const LockHandle handle = manager.acquire("a");
    const auto record = read_owner_record(dir / "locks" / "a");
    const bool own = record && record->pid == ::getpid();
    manager.release(handle);
    return own ? 0 : 1;
  });
  BOOST_TEST(code == 0);
  BOOST_TEST(flock_nonblocking(dir / "locks" / "a" / ".grex-lock") == 0);
}

// A process that gives up its privileges keeps the packs it opened: where
// the pack's path can no longer be looked at (EACCES), the guard and the
// heartbeat ask the directory descriptor instead; only a path that leads
// elsewhere or nowhere loses a hold.
BOOST_AUTO_TEST_CASE(a_pack_whose_path_becomes_unreachable_still_locks) {
  TempDir dir;
  fs::create_directory(dir / "private");
  fs::permissions(dir / "private", fs::perms::owner_all);
  LockOptions options;
  options.heartbeat = 20ms;
  options.stale_after = 1s;
  const PackLock lock = PackLock::open(dir / "private" / "pack", options);
  const int code = in_child([&] {
    PackLockHold first = lock.acquire();
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) return 2;
    if (::access((dir / "private").c_str(), X_OK) == 0) return 3;  // still reachable: no test
    // Several beats, each of which would find the path gone.
    if (eventually([&] { return first.lost(); }, 200ms)) return 4;
    if (first.release()) return 5;
    std::error_code ec;
    PackLockHold second = lock.try_acquire(Mode::exclusive, ec);
    return !ec && second.held() ? 0 : 6;
  });
  BOOST_TEST(code == 0);
}

BOOST_AUTO_TEST_SUITE_END()
