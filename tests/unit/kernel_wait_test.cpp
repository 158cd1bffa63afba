// Waiting in the kernel: a waiter blocked in flock(2) is listed in
// /proc/locks, woken by any tool's release and by a sidecar replaced under
// it; a cancellation or deadline ends the wait with nothing left pending;
// asynchronous waiters of a pack share one thread; a pack holds its sidecar
// and nothing else, and nothing done to it crashes a holder or a waiter.

#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <atomic>
#include <future>
#include <random>
#include <set>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "proc_locks.hpp"
#include "support.hpp"
#include "wait_thread.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

// Requests of this process still pending in the kernel for `file`.
int pending_requests_of_this_process(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return 0;
  std::error_code ec;
  int pending = 0;
  for (const detail::KernelLock& lock : detail::kernel_locks_on(st.st_dev, st.st_ino, ec)) {
    pending += lock.blocked && lock.pid == ::getpid();
  }
  return pending;
}

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename());
  return names;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(kernel_wait)

BOOST_FIXTURE_TEST_CASE(a_blocked_waiter_is_listed_and_woken_by_flock1, PackDir) {
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  auto waiter = std::async(std::launch::async, [&] { return lock.acquire(Mode::exclusive, 10s); });
  BOOST_TEST(eventually([&] { return waiting_here(pack); }));
  holder.close_stdin();
  PackLockHold hold = waiter.get();
  BOOST_TEST(hold.held());
  BOOST_TEST(pending_requests_of_this_process(lock.sidecar()) == 0);
}

// The waiter sleeps on the old inode, which its holder keeps: only inotify
// can tell it that the path names a free sidecar now (else: a timeout).
BOOST_FIXTURE_TEST_CASE(a_sidecar_replaced_under_a_waiter_is_waited_on_anew, PackDir) {
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  auto waiter = std::async(std::launch::async, [&] {
    std::error_code ec;
    PackLockHold hold = lock.acquire(Mode::exclusive, 20s, ec);
    return ec;
  });
  BOOST_REQUIRE(eventually([&] { return waiting_here(pack); }));
  write_file(dir / "fresh", "");
  fs::rename(dir / "fresh", lock.sidecar());
  BOOST_TEST((waiter.wait_for(10s) == std::future_status::ready));
  BOOST_TEST(!waiter.get());
}

// The waiter sleeps on the sidecar of the directory that the pack path
// named when it began; the pack is renamed away and a new directory takes
// its name. The grant on the old inode is not the pack's lock: the waiter
// drops it and locks the sidecar the path names now.
BOOST_FIXTURE_TEST_CASE(a_pack_renamed_under_a_waiter_is_not_taken_for_it, PackDir) {
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  auto waiter = std::async(std::launch::async, [&] { return lock.acquire(Mode::exclusive, 20s); });
  BOOST_REQUIRE(eventually([&] { return waiting_here(pack); }));
  fs::rename(pack, dir / "moved");
  fs::create_directory(pack);
  holder.close_stdin();
  BOOST_REQUIRE(holder.exit_code() == 0);
  PackLockHold hold = waiter.get();
  BOOST_REQUIRE(hold.held());
  BOOST_TEST(flock_nonblocking(pack / ".grex-lock") == 1);
  BOOST_TEST(flock_nonblocking(dir / "moved" / ".grex-lock") == 0);
}

// Cancel-versus-release races: after every `cancelled`, no request of this
// process is pending, and the lock is free for anyone.
BOOST_FIXTURE_TEST_CASE(a_cancelled_blocking_wait_leaves_nothing_behind, PackDir) {
  std::mt19937 random(7);
  const Root root = Root::open(pack);
  int cancelled = 0;
  for (int round = 0; round < 300; ++round) {
    Process holder = Process::flock_holder(lock.sidecar());
    holder.expect_line("locked");
    Context ctx;
    auto waiter = std::async(std::launch::async, [&] {
      std::error_code ec;
      UnlockFunc unlock = packlock::try_lock(ctx, root, ec);
      if (!ec) unlock();
      return ec;
    });
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 400));
    if (round % 2) holder.close_stdin();
    ctx.cancel();
    holder.close_stdin();
    const std::error_code ec = waiter.get();
    holder.wait();
    if (!ec) continue;
    ++cancelled;
    BOOST_TEST(pending_requests_of_this_process(lock.sidecar()) == 0);
    BOOST_TEST(flock_nonblocking(lock.sidecar()) == 0);
  }
  BOOST_TEST(cancelled > 0);
}

BOOST_FIXTURE_TEST_CASE(a_cancelled_async_wait_leaves_nothing_behind, PackDir) {
  std::mt19937 random(11);
  int cancelled = 0;
  for (int round = 0; round < 300; ++round) {
    Process holder = Process::flock_holder(lock.sidecar());
    holder.expect_line("locked");
    asio::io_context io;
    asio::cancellation_signal signal;
    std::error_code result;
    bool held_at_completion = false;
    lock.async_acquire(io.get_executor(), Mode::exclusive,
                       asio::bind_cancellation_slot(
                           signal.slot(), [&](std::error_code ec, PackLockHold hold) {
                             result = ec;
                             // Checked in the handler: nothing pending now.
                             if (ec) {
                               held_at_completion =
                                   pending_requests_of_this_process(lock.sidecar()) != 0;
                             }
                             hold.release();
                           }));
    std::thread runner([&] { io.run(); });
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 400));
    if (round % 2) holder.close_stdin();
    asio::post(io, [&] { signal.emit(asio::cancellation_type::terminal); });
    holder.close_stdin();
    runner.join();
    holder.wait();
    if (result != errc::cancelled) continue;
    ++cancelled;
    BOOST_TEST(!held_at_completion);
    BOOST_TEST(flock_nonblocking(lock.sidecar()) == 0);
  }
  BOOST_TEST(cancelled > 0);
}

// 200 asynchronous waiters on one pack: one wait thread, which ends once
// the pack has no asynchronous waiter left.
BOOST_FIXTURE_TEST_CASE(async_waiters_of_a_pack_share_one_thread_that_ends, PackDir) {
  // An earlier test's wait thread, detached, may still be on its way out.
  BOOST_REQUIRE(eventually([&] { return threads_named(detail::kWaitThreadName) == 0; }));
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  asio::io_context io;
  int served = 0;
  for (int i = 0; i < 200; ++i) {
    lock.async_acquire(io.get_executor(), Mode::exclusive,
                       [&](std::error_code ec, PackLockHold) { served += !ec; });
  }
  std::thread runner([&] { io.run(); });
  BOOST_TEST(eventually([&] { return waiting_here(pack); }));
  BOOST_TEST(threads_named(detail::kWaitThreadName) == 1);
  holder.close_stdin();
  runner.join();
  BOOST_TEST(served == 200);
  BOOST_TEST(eventually([&] { return threads_named(detail::kWaitThreadName) == 0; }));
}

// A timed-out operation whose context is destroyed as soon as its handler
// has run: the wait thread may drop the last reference to the operation
// after that, which must not touch the context (AddressSanitizer sees it).
BOOST_FIXTURE_TEST_CASE(a_context_destroyed_after_a_timeout_outlives_nothing, PackDir) {
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  for (int round = 0; round < 50; ++round) {
    std::error_code result;
    {
      asio::io_context io;
      lock.async_acquire(io.get_executor(), Mode::exclusive, 1ms,
                         [&](std::error_code ec, PackLockHold) { result = ec; });
      io.run();
    }
    BOOST_TEST((result == errc::timeout));
  }
  BOOST_TEST(eventually([&] { return threads_named(detail::kWaitThreadName) == 0; }));
}

// A wait with a deadline in a thread that blocks every signal (as servers
// block them in their workers) still ends, and the mask is left as it was.
BOOST_FIXTURE_TEST_CASE(a_blocked_wait_signal_still_ends_the_wait, PackDir) {
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  std::thread worker([&] {
    sigset_t all, after;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, nullptr);
    std::error_code ec;
    (void)lock.acquire(Mode::exclusive, 100ms, ec);
    BOOST_TEST((ec == errc::timeout));
    ::pthread_sigmask(SIG_SETMASK, nullptr, &after);
    BOOST_TEST(::sigismember(&after, SIGRTMAX - 3) == 1);
  });
  worker.join();
}

// The application's handler for the chosen signal is never replaced: the
// wait fails with errc::wait_signal_taken instead.
BOOST_AUTO_TEST_CASE(an_applications_wait_signal_handler_is_kept) {
  TempDir dir;
  const int signo = SIGRTMIN + 5;
  struct sigaction mine {};
  mine.sa_handler = [](int) {};
  ::sigemptyset(&mine.sa_mask);
  BOOST_REQUIRE(::sigaction(signo, &mine, nullptr) == 0);
  LockOptions options;
  options.wait_signal = signo;
  const PackLock lock = PackLock::open(dir / "pack", options);
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  std::error_code ec;
  (void)lock.acquire(Mode::exclusive, 5s, ec);
  BOOST_TEST((ec == errc::wait_signal_taken));
  struct sigaction now {};
  ::sigaction(signo, nullptr, &now);
  BOOST_TEST((now.sa_handler == mine.sa_handler));
  ::signal(signo, SIG_DFL);
}

// Holding, waiting (blocking, asynchronous, in another process), timing
// out and recovering a stale lock leave the sidecar alone in the pack.
BOOST_FIXTURE_TEST_CASE(a_busy_pack_holds_its_sidecar_and_nothing_else, PackDir) {
  PackLockHold hold = lock.acquire();
  Process other = Process::child({"hold", pack.string(), "exclusive"});
  BOOST_REQUIRE(eventually([&] { return flock_nonblocking(lock.sidecar()) == 1; }));
  asio::io_context io;
  lock.async_acquire(io.get_executor(), Mode::exclusive, 50ms, [](std::error_code, PackLockHold) {});
  io.run();
  BOOST_TEST(files_in(pack) == std::set<std::string>{".grex-lock"});
  hold.release();
  other.expect_line("locked");
  other.close_stdin();
  BOOST_TEST(other.exit_code() == kChildOk);
  LockOptions quick;
  quick.heartbeat = 10ms;
  quick.stale_after = 30ms;
  quick.stale_policy = StalePolicy::mtime;
  // A sidecar without record, so that the holder's own period does not count.
  const PackLock impatient = PackLock::open(dir / "stale", quick);
  Process stuck = Process::flock_holder(impatient.sidecar());
  stuck.expect_line("locked");
  BOOST_TEST(impatient.acquire(Mode::exclusive, 5s).held());  // recovers it
  BOOST_TEST(files_in(dir / "stale") == std::set<std::string>{".grex-lock"});
}

// Truncating the sidecar, then filling it with garbage, while a library
// holder, a blocking waiter of another process and an asynchronous waiter
// use it: everyone ends normally.
BOOST_FIXTURE_TEST_CASE(a_truncated_or_rewritten_sidecar_crashes_nobody, PackDir) {
  PackLockHold hold = lock.acquire();
  Process other = Process::child({"hold", pack.string(), "exclusive"});
  asio::io_context io;
  std::error_code async_result = errc::busy;
  lock.async_acquire(io.get_executor(), Mode::exclusive, 20s,
                     [&](std::error_code ec, PackLockHold got) {
                       async_result = ec;
                       got.release();
                     });
  std::thread runner([&] { io.run(); });
  BOOST_REQUIRE(eventually([&] { return flock_nonblocking(lock.sidecar()) == 1; }));
  fs::resize_file(lock.sidecar(), 0);
  write_file(lock.sidecar(), std::string(10000, '\xff'));
  fs::resize_file(lock.sidecar(), 3);
  BOOST_TEST(!hold.release());
  other.expect_line("locked");
  other.close_stdin();
  BOOST_TEST(other.exit_code() == kChildOk);
  runner.join();
  BOOST_TEST(!async_result);
}

BOOST_AUTO_TEST_SUITE_END()
