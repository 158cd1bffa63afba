// async_acquire: every completion token, every cancellation type before and
// during the wait, cancellation racing a release, FIFO service mixed with
// blocking waiters, and waiter visibility.

#include <signal.h>

#include <atomic>
#include <future>
#include <random>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct AsyncFixture : PackDir {
  asio::io_context io;

  // A partner process that holds the pack until told otherwise.
  Process server() {
    Process partner = Process::child({"server", pack.string()});
    return partner;
  }
  static void command(Process& partner, const std::string& line, const std::string& answer) {
    partner.write_line(line);
    partner.expect_line(answer);
  }
  void run_until(const std::function<bool()>& done) { test::run_until(io, done); }
  // Runs the io_context until this process watches the sidecar: the async
  // waiter is the head and waits at the kernel level.
  void run_until_waiting_at_kernel() {
    run_until([this] { return waiting_here(pack); });
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(async_acquire)

BOOST_FIXTURE_TEST_CASE(callback_runs_once_and_never_inside_the_initiating_call, AsyncFixture) {
  bool initiated = false;
  bool ran_inside = false;
  Outcome<PackLockHold> outcome;
  lock.async_acquire(io.get_executor(), Mode::exclusive,
                     [&](std::error_code ec, PackLockHold hold) {
                       ran_inside = !initiated;
                       record(outcome)(ec, std::move(hold));
                     });
  initiated = true;
  io.run();
  BOOST_TEST(!ran_inside);
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST(!outcome.ec);
  BOOST_TEST(outcome.value.held());
  BOOST_TEST((outcome.value.mode() == Mode::exclusive));
  BOOST_TEST(flock_nonblocking(lock.sidecar()) == 1);
}

BOOST_FIXTURE_TEST_CASE(use_future, AsyncFixture) {
  Process partner = server();
  command(partner, "hold", "locked");
  std::future<PackLockHold> future = lock.async_acquire(io.get_executor(), Mode::shared,
                                                        asio::use_future);
  std::thread runner([this] { io.run(); });
  BOOST_REQUIRE(eventually([this] { return waiting_here(pack); }));
  command(partner, "release", "released");
  PackLockHold hold = future.get();
  runner.join();
  BOOST_TEST(hold.held());
  BOOST_TEST((hold.mode() == Mode::shared));
  command(partner, "try", "busy");
}

BOOST_FIXTURE_TEST_CASE(use_future_reports_errors_as_exceptions, AsyncFixture) {
  Process partner = server();
  command(partner, "hold", "locked");
  auto future = lock.async_acquire(io.get_executor(), Mode::exclusive, 50ms, asio::use_future);
  io.run();
  try {
    future.get();
    BOOST_FAIL("must throw");
  } catch (const std::system_error& e) {
    BOOST_TEST((e.code() == errc::timeout));
  }
}

BOOST_FIXTURE_TEST_CASE(use_awaitable, AsyncFixture) {
  Outcome<PackLockHold> outcome;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        PackLockHold hold =
            co_await lock.async_acquire(co_await asio::this_coro::executor, Mode::exclusive,
                                        asio::use_awaitable);
        outcome.calls = 1;
        outcome.value = std::move(hold);
      },
      asio::detached);
  io.run();
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST(outcome.value.held());
}

BOOST_FIXTURE_TEST_CASE(use_awaitable_with_a_racing_timer_cancels_the_wait, AsyncFixture) {
  using namespace asio::experimental::awaitable_operators;
  Process partner = server();
  command(partner, "hold", "locked");
  int timer_won = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(co_await asio::this_coro::executor, 100ms);
        auto result = co_await (lock.async_acquire(co_await asio::this_coro::executor,
                                                   Mode::exclusive, asio::use_awaitable) ||
                                timer.async_wait(asio::use_awaitable));
        timer_won = result.index() == 1 ? 1 : 2;
      },
      asio::detached);
  io.run();
  BOOST_TEST(timer_won == 1);
  command(partner, "release", "released");
  command(partner, "try", "free");
}

BOOST_FIXTURE_TEST_CASE(deferred, AsyncFixture) {
  auto operation = lock.async_acquire(io.get_executor(), Mode::exclusive,
                                      asio::experimental::deferred);
  // Nothing happens until the deferred operation is launched.
  BOOST_TEST(flock_nonblocking(lock.sidecar()) == 0);
  Outcome<PackLockHold> outcome;
  std::move(operation)(record(outcome));
  io.run();
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST(outcome.value.held());
}

// A deferred operation's timeout runs from its launch: launched once a
// longer time than its timeout has gone by since its creation, it still
// waits in the kernel before it times out.
BOOST_FIXTURE_TEST_CASE(a_deferred_timeout_runs_from_the_launch, AsyncFixture) {
  Process partner = server();
  command(partner, "hold", "locked");
  auto operation = lock.async_acquire(io.get_executor(), Mode::exclusive, 300ms,
                                      asio::experimental::deferred);
  std::this_thread::sleep_for(400ms);  // the time between creation and launch
  Outcome<PackLockHold> outcome;
  const auto launched = std::chrono::steady_clock::now();
  std::move(operation)(record(outcome));
  io.run();
  // A timer never fires early: a deadline counted from the creation had
  // passed already, and the operation would have ended at once.
  BOOST_TEST((std::chrono::steady_clock::now() - launched >= 300ms));
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST((outcome.ec == errc::timeout));
  command(partner, "release", "released");
}

BOOST_FIXTURE_TEST_CASE(every_cancellation_type_before_and_during_the_wait, AsyncFixture) {
  Process partner = server();
  command(partner, "hold", "locked");
  const int descriptors_before = open_fds_to(lock.sidecar().string());
  for (const auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial,
                          asio::cancellation_type::total}) {
    for (const bool during : {false, true}) {
      BOOST_TEST_CONTEXT("type " << static_cast<int>(type) << (during ? " during" : " before")) {
        asio::cancellation_signal signal;
        Outcome<PackLockHold> outcome;
        lock.async_acquire(io.get_executor(), Mode::exclusive,
                           asio::bind_cancellation_slot(signal.slot(), record(outcome)));
        if (during) run_until_waiting_at_kernel();
        signal.emit(type);
        io.restart();
        run_until([&] { return outcome.calls == 1; });
        io.run_for(20ms);  // a second completion would show here
        BOOST_TEST(outcome.calls == 1);
        BOOST_TEST((outcome.ec == errc::cancelled), outcome.ec.message());
        BOOST_TEST((outcome.ec == std::errc::operation_canceled));
        BOOST_TEST(!outcome.value.held());
        BOOST_TEST(open_fds_to(lock.sidecar().string()) == descriptors_before);
        BOOST_TEST(!waiting_here(pack));
      }
    }
  }
  command(partner, "release", "released");
  command(partner, "try", "free");
}

BOOST_FIXTURE_TEST_CASE(a_timeout_completes_with_timeout, AsyncFixture) {
  Process partner = server();
  command(partner, "hold", "locked");
  Outcome<PackLockHold> outcome;
  lock.async_acquire(io.get_executor(), Mode::exclusive, 100ms, record(outcome));
  io.run();
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST((outcome.ec == errc::timeout));
  command(partner, "release", "released");
  command(partner, "try", "free");
}

BOOST_FIXTURE_TEST_CASE(cancellation_racing_a_release_never_leaves_the_lock_taken, AsyncFixture) {
  Process partner = server();
  std::mt19937 random(20261122);
  auto work = asio::make_work_guard(io);
  std::thread runner([this] { io.run(); });
  int cancelled = 0, granted = 0;
  constexpr int kRounds = 300;
  for (int round = 0; round < kRounds; ++round) {
    command(partner, "hold", "locked");
    asio::cancellation_signal signal;
    std::atomic<int> calls{0};
    Outcome<PackLockHold> outcome;
    asio::post(io, [&] {
      lock.async_acquire(io.get_executor(), Mode::exclusive,
                         asio::bind_cancellation_slot(signal.slot(),
                                                      [&](std::error_code ec, PackLockHold hold) {
                                                        record(outcome)(ec, std::move(hold));
                                                        ++calls;
                                                      }));
    });
    // Release in the other process and cancel here, a random moment apart:
    // sometimes before the release is seen, sometimes around the grant.
    partner.write_line("release");
    // A third of the rounds cancel at once, before the release can be seen.
    if (round % 3 != 0) std::this_thread::sleep_for(std::chrono::microseconds(random() % 200));
    asio::post(io, [&] { signal.emit(asio::cancellation_type::terminal); });
    BOOST_REQUIRE(eventually([&] { return calls.load() == 1; }));
    partner.expect_line("released");
    if (outcome.ec == errc::cancelled) {
      ++cancelled;
      BOOST_TEST(!outcome.value.held());
      // Seen from the other side: nobody holds the pack.
      command(partner, "try", "free");
    } else {
      ++granted;
      BOOST_TEST(!outcome.ec, outcome.ec.message());
      command(partner, "try", "busy");
      outcome.value.release();
    }
    // The emit ran before the next round reuses the signal.
    std::promise<void> drained;
    asio::post(io, [&] { drained.set_value(); });
    drained.get_future().wait();
    BOOST_TEST(calls.load() == 1);
  }
  work.reset();
  runner.join();
  // How the rounds fell depends on timing; every round was checked above.
  BOOST_TEST_MESSAGE("cancelled " << cancelled << ", granted " << granted);
  BOOST_TEST(cancelled + granted == kRounds);
}

BOOST_FIXTURE_TEST_CASE(blocking_and_async_waiters_share_one_fifo, AsyncFixture) {
  Process partner = server();
  command(partner, "hold", "locked");
  std::mutex mutex;
  std::vector<int> order;
  auto note = [&](int id) {
    std::lock_guard guard(mutex);
    order.push_back(id);
  };
  std::thread runner;
  std::vector<std::thread> blocking;
  // 0, 2, 4 async; 1, 3 blocking; each queued before the next starts.
  auto work = asio::make_work_guard(io);
  runner = std::thread([this] { io.run(); });
  const PackObservation none = observe(pack);
  for (int id = 0; id < 5; ++id) {
    if (id % 2 == 0) {
      // Runs on the io thread: no Boost.Test macros there.
      lock.async_acquire(io.get_executor(), Mode::exclusive,
                         [&, id](std::error_code ec, PackLockHold) { note(ec ? -1 : id); });
    } else {
      blocking.emplace_back([&, id] {
        PackLockHold hold = lock.acquire(Mode::exclusive, 30s);
        note(id);
      });
    }
    // Each waiter must be queued before the next starts: the first is the
    // head (watching at the kernel), the others wait in the table.
    BOOST_REQUIRE(eventually([&] {
      return waiting_here(pack) && observe(pack).waiters.size() == 1 && waiting_count(lock) == static_cast<std::size_t>(id) + 1;
    }));
  }
  command(partner, "release", "released");
  for (auto& thread : blocking) thread.join();
  BOOST_REQUIRE(eventually([&] {
    std::lock_guard guard(mutex);
    return order.size() == 5;
  }));
  work.reset();
  runner.join();
  BOOST_TEST(order == (std::vector<int>{0, 1, 2, 3, 4}), boost::test_tools::per_element());
  BOOST_TEST(none.waiters.empty());
}

BOOST_FIXTURE_TEST_CASE(a_release_without_close_wakes_the_async_waiter, AsyncFixture) {
  Process holder({"sh", "-c",
                  "exec 9<\"$0\"; flock -x 9; echo locked; read x; flock -u 9; echo unlocked; "
                  "read y; exit 0",
                  lock.sidecar().string()});
  holder.expect_line("locked");
  Outcome<PackLockHold> outcome;
  lock.async_acquire(io.get_executor(), Mode::exclusive, record(outcome));
  run_until_waiting_at_kernel();
  io.run_for(300ms);  // past the back-off cap: the waiter is at its slowest
  BOOST_TEST(outcome.calls == 0);
  holder.write_line("release");
  holder.expect_line("unlocked");
  const auto released = std::chrono::steady_clock::now();
  // A liveness limit of 6 times the 250 ms cap, not a measurement.
  while (outcome.calls == 0 && std::chrono::steady_clock::now() - released < 1500ms) {
    io.restart();
    io.run_for(5ms);
  }
  BOOST_REQUIRE(outcome.calls == 1);
  const auto noticed = std::chrono::steady_clock::now() - released;
  BOOST_TEST(outcome.value.held());
  BOOST_TEST_MESSAGE("release without close noticed after "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(noticed).count()
                     << " ms (cap 250 ms)");
  holder.close_stdin();
  BOOST_TEST(holder.exit_code() == 0);
}

BOOST_FIXTURE_TEST_CASE(waiters_are_visible_and_vanish_when_killed, AsyncFixture) {
  Process partner = server();
  command(partner, "hold", "locked");
  Process exclusive_waiter = Process::child({"hold", pack.string(), "exclusive"});
  Process shared_waiter = Process::child({"hold", pack.string(), "shared"});
  auto waiter_pids = [&] {
    std::vector<std::pair<pid_t, Mode>> seen;
    for (const LockParty& party : observe(pack).waiters) seen.emplace_back(party.pid, party.mode);
    return seen;
  };
  BOOST_REQUIRE(eventually([&] { return waiter_pids().size() == 2; }));
  const auto seen = waiter_pids();
  BOOST_TEST((std::find(seen.begin(), seen.end(),
                        std::pair{exclusive_waiter.pid(), Mode::exclusive}) != seen.end()));
  BOOST_TEST((std::find(seen.begin(), seen.end(), std::pair{shared_waiter.pid(), Mode::shared}) !=
              seen.end()));
  std::error_code exclusive_ec, shared_ec;
  std::thread exclusive_here([&] { (void)lock.acquire(Mode::exclusive, 30s, exclusive_ec); });
  BOOST_REQUIRE(eventually([&] { return waiting_count(lock) == 1; }));
  std::thread shared_here([&] { (void)lock.acquire(Mode::shared, 30s, shared_ec); });
  BOOST_REQUIRE(eventually([&] { return waiting_count(lock) == 2; }));
  // Only the head of this process's queue waits in the kernel: the process
  // shows once, in the head's mode.
  const auto mine = [&] {
    int count = 0;
    for (const LockParty& party : observe(pack).waiters) count += party.pid == ::getpid();
    return count;
  };
  BOOST_TEST(eventually([&] { return mine() == 1; }));

  const PackObservation observed = observe(pack);
  BOOST_TEST(observed.holders.size() == 1u);
  BOOST_TEST(observed.holders.at(0).pid == partner.pid());

  exclusive_waiter.kill(SIGKILL);
  exclusive_waiter.wait();
  // The requests the dead one blocked are woken and queued again by the
  // kernel: until they are, the table may miss them for a moment.
  std::vector<std::pair<pid_t, Mode>> after;
  const bool settled = eventually([&] {
    after = waiter_pids();
    return after.size() == 2;  // the shared child and this process
  });
  BOOST_TEST(settled);
  BOOST_TEST((std::find_if(after.begin(), after.end(), [&](const auto& w) {
                return w.first == exclusive_waiter.pid();
              }) == after.end()));
  BOOST_TEST((std::find(after.begin(), after.end(), std::pair{shared_waiter.pid(), Mode::shared}) !=
              after.end()));

  // A process blocked in flock(1) is listed the same way.
  Process blocked({"flock", lock.sidecar().string(), "true"});
  BOOST_REQUIRE(eventually([&] { return observe(pack).waiters.size() == 3; }));
  // The shared child would take the lock and keep it: it goes first.
  shared_waiter.kill(SIGKILL);
  shared_waiter.wait();
  command(partner, "release", "released");
  exclusive_here.join();
  shared_here.join();
  BOOST_TEST(!exclusive_ec, exclusive_ec.message());
  BOOST_TEST(!shared_ec, shared_ec.message());
}

BOOST_FIXTURE_TEST_CASE(a_context_destroyed_mid_wait_leaves_nothing_behind, AsyncFixture) {
  Process partner = server();
  command(partner, "hold", "locked");
  int calls = 0;
  const int sidecars_before = open_fds_to(lock.sidecar().string());
  const int inotify_before = open_fds_to("anon_inode:inotify");
  {
    asio::io_context doomed;
    lock.async_acquire(doomed.get_executor(), Mode::exclusive,
                       [&](std::error_code, PackLockHold) { ++calls; });
    lock.async_acquire(doomed.get_executor(), Mode::exclusive,
                       [&](std::error_code, PackLockHold) { ++calls; });
    // The head waits in the kernel, on the pack's wait thread.
    BOOST_REQUIRE(eventually([&] { return waiting_here(pack); }));
    BOOST_TEST(waiting_count(lock) == 2u);
  }
  BOOST_TEST(calls == 0);  // destroyed, never called
  BOOST_TEST(waiting_count(lock) == 0u);
  BOOST_TEST(!waiting_here(pack));
  BOOST_TEST(open_fds_to(lock.sidecar().string()) <= sidecars_before);
  // The wait thread ends, and its inotify instance with it.
  BOOST_TEST(eventually([&] { return open_fds_to("anon_inode:inotify") <= inotify_before; }));
  command(partner, "release", "released");
  BOOST_TEST(lock.try_acquire().held());
}

BOOST_FIXTURE_TEST_CASE(a_pack_lock_that_is_not_open_completes_with_not_open, AsyncFixture) {
  const PackLock closed;
  Outcome<PackLockHold> outcome;
  closed.async_acquire(io.get_executor(), Mode::exclusive, record(outcome));
  io.run();
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST((outcome.ec == errc::not_open));
}

BOOST_AUTO_TEST_SUITE_END()
