// The count of waiters in the waiters file: a release wakes other
// processes (the release word, the wake channel) only when someone is
// counted, and writes the wake channel only when a counted waiter listens
// on it; a counted waiter never misses a release (tried with the back-off
// timer out of the way, asleep on the release word and listening), other tools' releases and a replaced sidecar reach
// a waiter asleep on the release word through the inotify relay, and the
// count a SIGKILLed waiter leaves is taken back by the next waiter that
// finds itself alone.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <future>
#include <thread>

#include <asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "cancellation.hpp"
#include "engine.hpp"
#include "heartbeat.hpp"
#include "hold.hpp"
#include "pack.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct CountFixture : PackDir {
  fs::path waiters = pack / ".grex-lock.waiters";
  fs::path wake = pack / ".grex-lock.wake";

  // Word `index` of the waiters file as the file holds it (-1: unreadable).
  long word(int index) const {
    std::uint32_t value = 0;
    const detail::UniqueFd fd(::open(waiters.c_str(), O_RDONLY | O_CLOEXEC));
    const off_t offset = index * static_cast<off_t>(sizeof value);
    if (::pread(fd.get(), &value, sizeof value, offset) != static_cast<ssize_t>(sizeof value)) {
      return -1;
    }
    return value;
  }
  long count() const { return word(0); }
  long releases() const { return word(1); }  // the release word
  long listeners() const { return word(2); }  // waiters on the wake channel

  // The engine's view of the pack, to wait with a back-off of our own.
  std::shared_ptr<const detail::Pack> open_pack() const {
    std::error_code ec;
    auto opened = detail::Pack::open(pack, LockOptions{}, ec);
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    return opened;
  }

  // Whether the wake channel holds a byte nobody has read.
  bool wake_pending() const {
    const detail::UniqueFd fd(::open(wake.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    char byte;
    return ::read(fd.get(), &byte, 1) == 1;
  }
};

}  // namespace

namespace {

const detail::Backoff never{std::chrono::hours(1), std::chrono::hours(1), std::chrono::hours(1)};

// This process's threads named `name`.
int threads_named(const std::string& name) {
  int count = 0;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    count += read_file(task.path() / "comm") == name + "\n";
  }
  return count;
}

// Acquires `opened` on another thread, the back-off out of the way and a
// deadline 10 s off; `event` then happens once the waiter is asleep. True
// when the waiter got the lock before its deadline.
template <typename Event>
bool woken_by(const std::shared_ptr<const detail::Pack>& opened, Event event) {
  std::error_code ec;
  const auto deadline = detail::Clock::now() + std::chrono::seconds(10);
  std::unique_ptr<detail::Hold> hold;
  std::thread waiter([&] { hold = detail::acquire(opened, Mode::exclusive, deadline, ec, never); });
  // Asleep: counted, and the heartbeat thread, which relays, started.
  const bool asleep = eventually([&] {
    return waiting_here(opened->path()) && threads_named(detail::kHeartbeatThreadName) == 1;
  });
  event();
  waiter.join();
  BOOST_TEST(asleep);
  BOOST_TEST(!ec, ec.message());
  return hold && detail::Clock::now() < deadline;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(waiting_count)

BOOST_FIXTURE_TEST_CASE(a_release_with_nobody_waiting_writes_no_wake_up, CountFixture) {
  for (int i = 0; i < 3; ++i) {
    PackLockHold hold = lock.acquire();
    BOOST_TEST(hold.release().value() == 0);
  }
  BOOST_TEST(count() == 0);
  BOOST_TEST(releases() == 0);
  BOOST_TEST(!wake_pending());
}

BOOST_FIXTURE_TEST_CASE(a_waiter_of_another_process_is_counted_and_woken, CountFixture) {
  PackLockHold hold = lock.acquire();
  Process waiter = Process::child({"agent", pack.string()});
  waiter.write_line("acquire");
  BOOST_REQUIRE(eventually([&] { return count() == 1; }));
  const long before = releases();
  hold.release();
  BOOST_TEST(waiter.wait_for("locked").has_value());
  BOOST_TEST(count() == 0);
  // At least once: an inotify event relayed to a sleeper bumps it too.
  BOOST_TEST(releases() > before);
  waiter.write_line("release");
  BOOST_TEST(waiter.wait_for("released").has_value());
}

// With the back-off at an hour, only the wake channel and inotify can end
// a wait: a wake-up lost to the count would show as a timeout.
BOOST_FIXTURE_TEST_CASE(no_release_is_missed_with_the_back_off_out_of_the_way, CountFixture) {
  const auto opened = open_pack();
  Process holder = Process::child({"agent", pack.string()});
  for (int round = 0; round < 200; ++round) {
    holder.write_line("acquire");
    BOOST_REQUIRE(holder.wait_for("locked").has_value());
    // Released while this process makes its first attempts, or waits.
    holder.write_line("release");
    // A lost wake-up ends the wait only at the deadline, where the attempt
    // then succeeds: reaching it is the failure.
    const auto deadline = detail::Clock::now() + std::chrono::seconds(10);
    std::error_code ec;
    auto hold = detail::acquire(opened, Mode::exclusive, deadline, ec, never);
    BOOST_REQUIRE_MESSAGE(!ec && detail::Clock::now() < deadline,
                          "round " << round << ": " << (ec ? ec.message() : "woken by the deadline"));
    BOOST_REQUIRE(holder.wait_for("released").has_value());
    hold->release();
  }
}

// A waiter asleep on the release word reads nothing from the wake channel:
// a byte written there would only delay the releaser's yield.
BOOST_FIXTURE_TEST_CASE(a_release_writes_the_wake_channel_only_for_a_listener, CountFixture) {
  PackLockHold hold = lock.acquire();
  Process waiter = Process::child({"agent", pack.string()});
  waiter.write_line("acquire");
  BOOST_REQUIRE(eventually([&] { return count() == 1; }));
  BOOST_TEST(listeners() == 0);
  hold.release();
  BOOST_TEST(waiter.wait_for("locked").has_value());
  BOOST_TEST(!wake_pending());
  waiter.write_line("release");
  BOOST_TEST(waiter.wait_for("released").has_value());
}

// A wait a cancellation can end polls the wake channel: it is counted as a
// listener, and with the back-off at an hour no release of another process
// (LOCK_UN, no close: no inotify event) may go unheard.
BOOST_FIXTURE_TEST_CASE(a_cancellable_waiter_listens_and_misses_no_release, CountFixture) {
  const auto opened = open_pack();
  Process holder = Process::child({"agent", pack.string()});
  for (int round = 0; round < 100; ++round) {
    holder.write_line("acquire");
    BOOST_REQUIRE(holder.wait_for("locked").has_value());
    const bool check_counts = round == 0;
    if (!check_counts) holder.write_line("release");
    detail::Cancellation cancel;
    const auto deadline = detail::Clock::now() + std::chrono::seconds(10);
    std::error_code ec;
    std::unique_ptr<detail::Hold> hold;
    std::thread waiter(
        [&] { hold = detail::acquire(opened, Mode::exclusive, deadline, ec, never, &cancel); });
    if (check_counts) {
      BOOST_TEST(eventually([&] { return listeners() == 1 && count() == 1; }));
      holder.write_line("release");
    }
    waiter.join();
    BOOST_REQUIRE_MESSAGE(!ec && hold && detail::Clock::now() < deadline,
                          "round " << round << ": " << (ec ? ec.message() : "woken by the deadline"));
    BOOST_REQUIRE(holder.wait_for("released").has_value());
    hold->release();
    if (check_counts) BOOST_TEST(listeners() == 0);
  }
}

BOOST_FIXTURE_TEST_CASE(an_asynchronous_waiter_is_counted_as_a_listener, CountFixture) {
  Process holder = Process::child({"agent", pack.string()});
  holder.write_line("acquire");
  BOOST_REQUIRE(holder.wait_for("locked").has_value());
  asio::io_context io;
  std::error_code result = make_error_code(std::errc::interrupted);
  PackLockHold hold;
  lock.async_acquire(io.get_executor(), Mode::exclusive,
                     [&](std::error_code ec, PackLockHold taken) {
                       result = ec;
                       hold = std::move(taken);
                     });
  run_until(io, [&] { return listeners() == 1 && count() == 1; });
  BOOST_TEST(listeners() == 1);
  holder.write_line("release");
  run_until(io, [&] { return hold.held(); });
  BOOST_TEST(!result, result.message());
  BOOST_TEST(listeners() == 0);
  BOOST_REQUIRE(holder.wait_for("released").has_value());
}

// No packlock release here: only inotify can tell, through the relay.
BOOST_FIXTURE_TEST_CASE(another_tools_close_wakes_a_waiter_asleep_on_the_release_word, CountFixture) {
  const auto opened = open_pack();
  for (int round = 0; round < 3; ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      Process holder = Process::flock_holder(pack / ".grex-lock");
      holder.expect_line("locked");
      BOOST_TEST(woken_by(opened, [&] { holder.close_stdin(); }));
      BOOST_TEST(holder.exit_code() == 0);
    }
  }
}

// A wait inside a logger or callback runs on the heartbeat thread, which
// relays inotify events to sleepers: it listens on the wake channel and
// polls inotify itself, so another tool's close still wakes it.
BOOST_FIXTURE_TEST_CASE(a_wait_inside_a_heartbeat_callback_hears_another_tools_close, CountFixture) {
  const auto opened = open_pack();
  Process holder = Process::flock_holder(pack / ".grex-lock");
  holder.expect_line("locked");
  LockOptions slow_beat;
  slow_beat.heartbeat = std::chrono::seconds(30);  // inotify tells the loss
  slow_beat.stale_after = std::chrono::seconds(90);
  const PackLock other = PackLock::open(pack.parent_path() / "other", slow_beat);
  PackLockHold lost = other.acquire();
  std::promise<bool> woken;
  lost.on_lost([&] {
    const auto deadline = detail::Clock::now() + std::chrono::seconds(10);
    std::error_code ec;
    const auto hold = detail::acquire(opened, Mode::exclusive, deadline, ec, never);
    woken.set_value(!ec && hold && detail::Clock::now() < deadline);
  });
  fs::remove(other.sidecar());
  BOOST_TEST(eventually([&] { return waiting_here(pack); }));
  holder.close_stdin();
  auto result = woken.get_future();
  BOOST_REQUIRE(result.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  BOOST_TEST(result.get(), "the callback's wait ended only at its deadline");
  BOOST_TEST(holder.exit_code() == 0);
}

BOOST_FIXTURE_TEST_CASE(a_replaced_sidecar_wakes_a_waiter_asleep_on_the_release_word, CountFixture) {
  const auto opened = open_pack();
  // flock(1) keeps holding the old inode: the waiter must move to the new
  // file the path names, which is free.
  Process holder = Process::flock_holder(pack / ".grex-lock");
  holder.expect_line("locked");
  write_file(pack / "replacement", "");
  BOOST_TEST(woken_by(opened, [&] { fs::rename(pack / "replacement", pack / ".grex-lock"); }));
  holder.close_stdin();
  BOOST_TEST(holder.exit_code() == 0);
}

// A forked child has no thread of its parent's: it relays through its own.
BOOST_FIXTURE_TEST_CASE(a_forked_child_asleep_on_the_release_word_has_its_own_relay, CountFixture) {
  const auto opened = open_pack();
  {
    Process first = Process::flock_holder(pack / ".grex-lock");
    first.expect_line("locked");
    BOOST_REQUIRE(woken_by(opened, [&] { first.close_stdin(); }));  // this process's relay runs
  }
  // The child is forked before flock(1) starts, or it would keep the
  // holder's stdin open; it waits for the word to go.
  int go[2];
  BOOST_REQUIRE(::pipe(go) == 0);
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    ::close(go[1]);
    char byte;
    if (::read(go[0], &byte, 1) != 1) ::_exit(4);
    const auto deadline = detail::Clock::now() + std::chrono::seconds(10);
    std::error_code ec;
    const auto hold = detail::acquire(opened, Mode::exclusive, deadline, ec, never);
    ::_exit(ec ? 1 : !hold ? 2 : detail::Clock::now() >= deadline ? 3 : 0);
  }
  ::close(go[0]);
  Process holder = Process::flock_holder(pack / ".grex-lock");
  holder.expect_line("locked");
  BOOST_REQUIRE(::write(go[1], "g", 1) == 1);
  ::close(go[1]);
  const bool child_waits = eventually([&] {
    std::error_code observed;
    for (const LockParty& party : observe(pack, observed).waiters) {
      if (party.pid == child) return true;
    }
    return false;
  });
  holder.close_stdin();
  int status = 0;
  ::waitpid(child, &status, 0);
  BOOST_TEST(child_waits);
  BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0), "child status " << status);
  BOOST_TEST(holder.exit_code() == 0);
}

BOOST_FIXTURE_TEST_CASE(a_killed_waiters_count_is_taken_back_by_the_next_lone_waiter, CountFixture) {
  PackLockHold hold = lock.acquire();
  Process doomed = Process::child({"agent", pack.string()});
  doomed.write_line("acquire");
  BOOST_REQUIRE(eventually([&] { return count() == 1; }));
  doomed.kill(SIGKILL);
  doomed.wait();
  BOOST_TEST(count() == 1);  // nobody could take it back

  // A waiter of this process, alone now, clears it when it is done.
  std::error_code ec;
  std::thread waiter([&] { PackLockHold taken = lock.acquire(Mode::exclusive, 10s, ec); });
  BOOST_REQUIRE(eventually([&] { return count() == 2; }));
  hold.release();
  waiter.join();
  BOOST_TEST(!ec);
  BOOST_TEST(count() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
