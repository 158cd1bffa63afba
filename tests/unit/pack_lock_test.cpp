// PackLock: exclusion within and across processes, shared mode, interop
// with flock(1), re-entry, timeouts, waking on release, and the hold.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct PackFixture : PackDir {
  int child_try(Mode mode) {
    return Process::child({"try", pack.string(), std::string(to_string(mode))}).exit_code();
  }
  Process child_holding(Mode mode) {
    Process holder = Process::child({"hold", pack.string(), std::string(to_string(mode))});
    holder.expect_line("locked");
    return holder;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(pack_lock)

// Only the engine's faces make holds: no public constructor takes the
// engine's hold. One constant names the default sidecar, and every public
// default uses it.
static_assert(!std::is_constructible_v<PackLockHold, std::unique_ptr<detail::Hold>>);
BOOST_AUTO_TEST_CASE(one_constant_names_the_default_sidecar) {
  BOOST_TEST(std::string(kDefaultSidecarName) == ".grex-lock");
  BOOST_TEST(LockOptions().sidecar_name == kDefaultSidecarName);
  BOOST_TEST(ObserveOptions().sidecar_name == kDefaultSidecarName);
  BOOST_TEST(Root().lock_file() == kDefaultSidecarName);
}

// The period not given follows the one given: only stale_after S gives a
// heartbeat of min(10 s, S/3), only heartbeat H a stale period of
// max(30 s, 3H); both given with H >= S is refused. The owner record says
// what is in force.
BOOST_FIXTURE_TEST_CASE(the_period_not_given_follows_the_one_given, PackFixture) {
  const auto record_of = [&](const LockOptions& options) {
    const PackLock given = PackLock::open(pack, options);
    PackLockHold hold = given.acquire();
    const auto owner = observe(pack).owner;
    BOOST_REQUIRE(owner.has_value());
    return std::pair{owner->heartbeat, owner->stale_after};
  };
  LockOptions only_stale;
  only_stale.stale_after = 6s;
  BOOST_TEST((record_of(only_stale) == std::pair<std::chrono::nanoseconds, std::chrono::nanoseconds>(2s, 6s)));
  only_stale.stale_after = 90s;
  BOOST_TEST((record_of(only_stale) == std::pair<std::chrono::nanoseconds, std::chrono::nanoseconds>(10s, 90s)));
  LockOptions only_heartbeat;
  only_heartbeat.heartbeat = 60s;
  BOOST_TEST((record_of(only_heartbeat) == std::pair<std::chrono::nanoseconds, std::chrono::nanoseconds>(60s, 180s)));
  only_heartbeat.heartbeat = 1s;
  BOOST_TEST((record_of(only_heartbeat) == std::pair<std::chrono::nanoseconds, std::chrono::nanoseconds>(1s, 30s)));
  BOOST_TEST((record_of(LockOptions{}) == std::pair<std::chrono::nanoseconds, std::chrono::nanoseconds>(10s, 30s)));
  LockOptions both;
  both.heartbeat = 60s;
  both.stale_after = 30s;
  std::error_code ec;
  (void)PackLock::open(pack, both, ec);
  BOOST_TEST((ec == std::errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(a_context_with_one_period_derives_the_other) {
  TempDir dir;
  fs::create_directories(dir / "store");
  const Root root = Root::open(dir / "store");
  UnlockFunc unlock = try_lock(Context().with_stale_after(9s), root);
  const auto owner = observe(dir / "store", root.lock_file()).owner;
  BOOST_REQUIRE(owner.has_value());
  BOOST_TEST((owner->heartbeat == 3s));
  BOOST_TEST((owner->stale_after == 9s));
}

BOOST_FIXTURE_TEST_CASE(two_pack_locks_in_one_process_exclude_each_other, PackFixture) {
  const PackLock other = PackLock::open(pack);
  PackLockHold hold = lock.try_acquire();
  BOOST_TEST(hold.held());
  std::error_code ec;
  std::thread([&] { (void)other.try_acquire(Mode::exclusive, ec); }).join();
  BOOST_TEST((ec == errc::busy));
  BOOST_TEST(!hold.release());
  std::thread([&] { BOOST_TEST(other.try_acquire(Mode::exclusive, ec).held()); }).join();
  BOOST_TEST(!ec);
}

BOOST_FIXTURE_TEST_CASE(two_processes_exclude_each_other, PackFixture) {
  {
    PackLockHold hold = lock.acquire();
    BOOST_TEST(child_try(Mode::exclusive) == kChildBusy);
    BOOST_TEST(child_try(Mode::shared) == kChildBusy);
  }
  BOOST_TEST(child_try(Mode::exclusive) == kChildOk);
  Process holder = child_holding(Mode::exclusive);
  std::error_code ec;
  (void)lock.try_acquire(Mode::exclusive, ec);
  BOOST_TEST((ec == errc::busy));
  holder.close_stdin();
  BOOST_TEST(holder.exit_code() == kChildOk);
  BOOST_TEST(lock.try_acquire().held());
}

BOOST_FIXTURE_TEST_CASE(shared_holders_coexist_and_exclude_exclusive_ones, PackFixture) {
  PackLockHold mine = lock.try_acquire(Mode::shared);
  const PackLock other = PackLock::open(pack);
  std::error_code ec;
  std::thread([&] {
    PackLockHold second = other.try_acquire(Mode::shared, ec);
    BOOST_TEST(second.held());
  }).join();
  BOOST_TEST(!ec);
  BOOST_TEST(child_try(Mode::shared) == kChildOk);
  BOOST_TEST(child_try(Mode::exclusive) == kChildBusy);
  std::thread([&] { (void)other.try_acquire(Mode::exclusive, ec); }).join();
  BOOST_TEST((ec == errc::busy));

  mine.release();
  Process holder = child_holding(Mode::shared);
  BOOST_TEST(lock.try_acquire(Mode::shared).held());
  (void)lock.try_acquire(Mode::exclusive, ec);
  BOOST_TEST((ec == errc::busy));
}

BOOST_FIXTURE_TEST_CASE(flock_1_and_packlock_exclude_each_other, PackFixture) {
  {
    Process holder = Process::flock_holder(lock.sidecar());
    holder.expect_line("locked");
    std::error_code ec;
    (void)lock.try_acquire(Mode::exclusive, ec);
    BOOST_TEST((ec == errc::busy));
    (void)lock.try_acquire(Mode::shared, ec);
    BOOST_TEST((ec == errc::busy));
    holder.close_stdin();
    BOOST_TEST(holder.exit_code() == 0);
  }
  {
    PackLockHold hold = lock.acquire(Mode::exclusive);
    BOOST_TEST(flock_nonblocking(lock.sidecar(), "-x") == 1);
    BOOST_TEST(flock_nonblocking(lock.sidecar(), "-s") == 1);
  }
  {
    PackLockHold hold = lock.acquire(Mode::shared);
    BOOST_TEST(flock_nonblocking(lock.sidecar(), "-s") == 0);
    BOOST_TEST(flock_nonblocking(lock.sidecar(), "-x") == 1);
  }
  BOOST_TEST(flock_nonblocking(lock.sidecar(), "-x") == 0);
}

BOOST_FIXTURE_TEST_CASE(symlinked_spellings_of_a_pack_are_one_pack, PackFixture) {
  fs::create_directory_symlink(pack, dir / "link");
  fs::create_directory_symlink(dir / "link", dir / "link2");
  const PackLock via_link = PackLock::open(dir / "link2");
  BOOST_TEST(via_link.pack() == lock.pack());
  PackLockHold hold = lock.acquire();
  // Were the spellings two keys, this blocking acquire would wait on the
  // kernel lock this thread holds until its timeout; as one key it is
  // re-entry, refused at once.
  std::error_code ec;
  (void)via_link.acquire(Mode::exclusive, 5s, ec);
  BOOST_TEST((ec == errc::busy), ec.message());
}

// The pack is its path, as for flock(1): a PackLock whose directory was
// renamed away finds no pack there, then locks the directory that takes
// the name, not the renamed one.
BOOST_FIXTURE_TEST_CASE(a_pack_lock_follows_its_path_not_a_renamed_directory, PackFixture) {
  fs::rename(pack, dir / "renamed");
  std::error_code ec;
  (void)lock.acquire(Mode::exclusive, 5s, ec);
  BOOST_TEST((ec == std::errc::no_such_file_or_directory), ec.message());
  BOOST_TEST(!fs::exists(pack));
  fs::create_directory(pack);
  PackLockHold hold = lock.acquire();
  BOOST_TEST(flock_nonblocking(pack / ".grex-lock") == 1);
  BOOST_TEST(flock_nonblocking(dir / "renamed" / ".grex-lock") == 0);
}

// The pack's path is canonical: a symlink that takes its place later is
// planted, and following it would create or write a sidecar elsewhere.
BOOST_FIXTURE_TEST_CASE(a_symlink_put_in_place_of_the_pack_is_not_followed, PackFixture) {
  fs::rename(pack, dir / "renamed");
  fs::create_directory(dir / "elsewhere");
  fs::create_directory_symlink(dir / "elsewhere", pack);
  std::error_code ec;
  (void)lock.acquire(Mode::exclusive, 5s, ec);
  BOOST_TEST(static_cast<bool>(ec));  // refused as a symlinked sidecar is
  BOOST_TEST(!fs::exists(dir / "elsewhere" / ".grex-lock"));
}

BOOST_FIXTURE_TEST_CASE(a_hold_left_by_an_exited_thread_is_not_reentry_of_a_new_one, PackFixture) {
  // Thread ids are reused; re-entry must not be judged by them.
  PackLockHold left_behind;
  std::thread([&] { left_behind = lock.acquire(Mode::shared); }).join();
  std::error_code ec;
  PackLockHold mine;
  std::thread([&] { mine = lock.acquire(Mode::shared, 5s, ec); }).join();
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(mine.held());
}

BOOST_FIXTURE_TEST_CASE(reentry_by_the_holding_thread_is_busy_not_a_deadlock, PackFixture) {
  for (const Mode held : {Mode::exclusive, Mode::shared}) {
    PackLockHold hold = lock.acquire(held);
    for (const Mode asked : {Mode::exclusive, Mode::shared}) {
      if (held == Mode::shared && asked == Mode::shared) continue;  // granted: see below
      std::error_code ec;
      (void)lock.acquire(asked, 5s, ec);
      BOOST_TEST((ec == errc::busy), ec.message());
      (void)lock.acquire(asked, std::nullopt, ec);
      BOOST_TEST((ec == errc::busy), ec.message());
      (void)lock.try_acquire(asked, ec);
      BOOST_TEST((ec == errc::busy), ec.message());
    }
    if (held == Mode::exclusive) BOOST_CHECK_THROW(lock.acquire(held), Error);
  }
}

// A thread holding a pack shared takes it shared again at once, in every
// face, even with an exclusive waiter queued behind it (waiting would wait
// for itself); an upgrade stays busy.
BOOST_FIXTURE_TEST_CASE(a_shared_holder_takes_the_pack_shared_again, PackFixture) {
  PackLockHold first = lock.acquire(Mode::shared);
  std::error_code exclusive_ec = errc::busy;
  std::thread exclusive_waiter([&] { (void)lock.acquire(Mode::exclusive, 30s, exclusive_ec); });
  BOOST_REQUIRE(eventually([&] { return waiting_count(lock) == 1; }));
  PackLockHold again = lock.try_acquire(Mode::shared);
  BOOST_TEST(again.held());
  PackLockHold third = lock.acquire(Mode::shared, 5s);
  BOOST_TEST(third.held());
  std::error_code ec;
  (void)lock.try_acquire(Mode::exclusive, ec);
  BOOST_TEST((ec == errc::busy));
  BOOST_TEST(flock_nonblocking(lock.sidecar(), "-s") == 0);  // shared, as the kernel sees it
  first.release();
  again.release();
  third.release();
  exclusive_waiter.join();
  BOOST_TEST(!exclusive_ec, exclusive_ec.message());
}

BOOST_AUTO_TEST_CASE(try_rlock_twice_from_one_thread_succeeds) {
  TempDir dir;
  fs::create_directories(dir / "store");
  const Root root = Root::open(dir / "store");
  UnlockFunc first = try_rlock(Context(), root);
  UnlockFunc second = try_rlock(Context(), root);
  BOOST_TEST(static_cast<bool>(second));
  std::error_code ec, cause;
  (void)try_lock(Context(), root, ec, &cause);
  BOOST_TEST((cause == errc::busy));
  BOOST_TEST(!first());
  BOOST_TEST(!second());
}

BOOST_FIXTURE_TEST_CASE(acquire_times_out_at_its_deadline, PackFixture) {
  Process holder = child_holding(Mode::exclusive);
  std::error_code ec;
  const auto start = std::chrono::steady_clock::now();
  PackLockHold hold = lock.acquire(Mode::exclusive, 300ms, ec);
  const auto waited = std::chrono::steady_clock::now() - start;
  BOOST_TEST((ec == errc::timeout), ec.message());
  BOOST_TEST(!hold.held());
  BOOST_TEST(waited >= 300ms);  // it did not give up early
  try {
    (void)lock.acquire(Mode::exclusive, 0ms);
    BOOST_FAIL("must throw");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == errc::timeout));
    BOOST_TEST(e.path() == lock.sidecar());
  }
}

BOOST_FIXTURE_TEST_CASE(the_longest_timeout_waits_rather_than_overflowing, PackFixture) {
  std::error_code ec;
  PackLockHold hold = lock.acquire(Mode::exclusive, std::chrono::steady_clock::duration::max(), ec);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(hold.held());
}

BOOST_FIXTURE_TEST_CASE(acquire_wakes_when_another_process_releases, PackFixture) {
  Process holder = child_holding(Mode::exclusive);
  std::error_code ec;
  PackLockHold hold;
  std::thread waiter([&] { hold = lock.acquire(Mode::exclusive, 30s, ec); });
  BOOST_REQUIRE(eventually([&] { return waiting_here(lock.pack()); }));
  holder.close_stdin();
  waiter.join();
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(hold.held());
  BOOST_TEST(holder.exit_code() == kChildOk);
}

BOOST_FIXTURE_TEST_CASE(a_release_without_close_is_seen_by_the_back_off, PackFixture) {
  // flock -u releases while the descriptor stays open: no inotify event.
  Process holder({"sh", "-c",
                  "exec 9<\"$0\"; flock -x 9; echo locked; read x; flock -u 9; echo unlocked; "
                  "read y; exit 0",
                  lock.sidecar().string()});
  holder.expect_line("locked");
  std::error_code ec;
  PackLockHold hold;
  std::promise<void> acquired;
  std::thread waiter([&] {
    hold = lock.acquire(Mode::exclusive, std::nullopt, ec);
    acquired.set_value();
  });
  BOOST_REQUIRE(eventually([&] { return waiting_here(lock.pack()); }));
  holder.write_line("release");
  holder.expect_line("unlocked");
  // The kernel wakes the waiter on the unlock; 1.5 s is a liveness limit,
  // not a measurement. A waiter woken only by a close would wait until the
  // holder closes its descriptor below.
  const bool in_time = acquired.get_future().wait_for(1500ms) == std::future_status::ready;
  holder.close_stdin();
  waiter.join();
  BOOST_TEST(in_time);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(hold.held());
  BOOST_TEST(holder.exit_code() == 0);
}

BOOST_FIXTURE_TEST_CASE(hold_is_move_only_and_releases_once, PackFixture) {
  static_assert(!std::is_copy_constructible_v<PackLockHold>);
  static_assert(!std::is_copy_assignable_v<PackLockHold>);
  static_assert(std::is_nothrow_move_constructible_v<PackLockHold>);
  static_assert(std::is_nothrow_destructible_v<PackLockHold>);

  const auto before = std::chrono::system_clock::now();
  PackLockHold hold = lock.acquire(Mode::shared);
  BOOST_TEST((hold.mode() == Mode::shared));
  BOOST_TEST(hold.pack() == lock.pack());
  BOOST_TEST((hold.acquired_at() >= before));
  BOOST_TEST((hold.acquired_at() <= std::chrono::system_clock::now()));

  PackLockHold moved = std::move(hold);
  BOOST_TEST(!hold.held());
  BOOST_TEST((hold.release() == errc::not_held));
  BOOST_TEST(moved.held());
  BOOST_TEST(!moved.release());
  BOOST_TEST(!moved.held());
  BOOST_TEST(!moved.release());
  BOOST_TEST(moved.pack() == lock.pack());
  BOOST_TEST(flock_nonblocking(lock.sidecar()) == 0);
  BOOST_TEST((PackLockHold().release() == errc::not_held));
}

BOOST_FIXTURE_TEST_CASE(destroying_a_hold_releases_it, PackFixture) {
  { PackLockHold hold = lock.acquire(); BOOST_TEST(flock_nonblocking(lock.sidecar()) == 1); }
  BOOST_TEST(flock_nonblocking(lock.sidecar()) == 0);
  BOOST_TEST(lock.try_acquire().held());
}

BOOST_FIXTURE_TEST_CASE(a_forked_child_that_releases_leaves_the_parent_holding, PackFixture) {
  PackLockHold hold = lock.acquire();
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) ::_exit(hold.release() ? 1 : 0);
  int status = 0;
  ::waitpid(child, &status, 0);
  BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  BOOST_TEST(hold.held());
  BOOST_TEST(flock_nonblocking(lock.sidecar()) == 1);
  BOOST_TEST(child_try(Mode::exclusive) == kChildBusy);
}

BOOST_FIXTURE_TEST_CASE(a_forked_child_starts_with_a_fresh_lock_table, PackFixture) {
  PackLockHold hold = lock.acquire();
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    // The parent's hold is the kernel's business here, not re-entry: the
    // child waits for it and times out.
    std::error_code ec;
    (void)lock.acquire(Mode::exclusive, 100ms, ec);
    ::_exit(ec == errc::timeout ? 0 : ec == errc::busy ? 2 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0), "child status " << status);
}

// Not under sanitizers: GCC 12's AddressSanitizer and ThreadSanitizer do
// not hold their allocators' locks across fork(2), so a child of threads
// that allocate may hang in the sanitizer's malloc, not in the library.
// The fork_safety suite checks the fork contract deterministically there.
#ifndef PACKLOCK_SANITIZED
BOOST_FIXTURE_TEST_CASE(a_child_forked_while_threads_contend_can_still_wait, PackFixture) {
  // A fork copies each mutex as it is at that instant, taken or not; the
  // child has none of the threads that would let go of one. Its wait must
  // not hang on a lock a parent thread held in the lock table, the queue or
  // the process facts.
  std::atomic<bool> stop{false};
  std::vector<std::thread> contenders;
  for (int i = 0; i < 3; ++i)
    contenders.emplace_back([&] {
      while (!stop.load()) PackLockHold hold = lock.acquire();
    });
  int hung = 0;
  for (int round = 0; round < 500 && hung == 0; ++round) {
    const pid_t child = ::fork();
    BOOST_REQUIRE(child >= 0);
    if (child == 0) {
      std::error_code ec;
      (void)lock.acquire(Mode::exclusive, 50ms, ec);
      ::_exit(!ec || ec == errc::timeout ? 0 : 1);
    }
    int status = -1;
    if (!eventually([&] { return ::waitpid(child, &status, WNOHANG) == child; })) {
      ++hung;
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      continue;
    }
    BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0), "child status " << status);
  }
  stop = true;
  for (std::thread& contender : contenders) contender.join();
  BOOST_TEST(hung == 0);
}
#endif

BOOST_FIXTURE_TEST_CASE(a_pack_lock_used_on_both_sides_of_a_fork_still_excludes, PackFixture) {
  // Both processes have the same PackLock, with whatever it kept before the
  // fork; a lock taken in the child must exclude the parent.
  { PackLockHold warm = lock.acquire(); }
  int ready[2];
  BOOST_REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    std::error_code ec;
    PackLockHold hold = lock.acquire(Mode::exclusive, 5s, ec);
    const char state = ec ? 'e' : 'h';
    (void)!::write(ready[1], &state, 1);
    ::pause();  // killed by the parent
    ::_exit(0);
  }
  char state = 0;
  BOOST_REQUIRE(::read(ready[0], &state, 1) == 1);
  BOOST_TEST(state == 'h');
  std::error_code ec;
  (void)lock.try_acquire(Mode::exclusive, ec);
  BOOST_TEST((ec == errc::busy), ec.message());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  BOOST_TEST(lock.try_acquire().held());
}

BOOST_FIXTURE_TEST_CASE(another_descriptor_of_the_sidecar_closing_keeps_the_lock, PackFixture) {
  PackLockHold hold = lock.acquire();
  const int fd = ::open(lock.sidecar().c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  ::close(fd);
  { const PackLock again = PackLock::open(pack); }
  BOOST_TEST(flock_nonblocking(lock.sidecar()) == 1);
  BOOST_TEST(hold.held());
}

BOOST_FIXTURE_TEST_CASE(the_lock_descriptor_is_not_inherited_across_exec, PackFixture) {
  PackLockHold hold = lock.acquire();
  // A command started while we hold sees no descriptor on the sidecar.
  const int found = run({"sh", "-c",
                         "for f in /proc/self/fd/*; do [ \"$(readlink $f)\" = \"$0\" ] && exit 1; "
                         "done; exit 0",
                         lock.sidecar().string()});
  BOOST_TEST(found == 0);
}

BOOST_AUTO_TEST_SUITE_END()
