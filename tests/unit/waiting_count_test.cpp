// The count of waiters in the waiters file: a release wakes other
// processes through the wake channel only when someone is counted, a
// counted waiter never misses a release (tried with the back-off timer out
// of the way), and the count a SIGKILLed waiter leaves is taken back by the
// next waiter that finds itself alone.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <thread>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "engine.hpp"
#include "pack.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct CountFixture : PackDir {
  fs::path waiters = pack / ".grex-lock.waiters";
  fs::path wake = pack / ".grex-lock.wake";

  // The count as the file holds it (-1: unreadable).
  long count() const {
    std::uint32_t value = 0;
    const detail::UniqueFd fd(::open(waiters.c_str(), O_RDONLY | O_CLOEXEC));
    if (::pread(fd.get(), &value, sizeof value, 0) != static_cast<ssize_t>(sizeof value)) return -1;
    return value;
  }

  // Whether the wake channel holds a byte nobody has read.
  bool wake_pending() const {
    const detail::UniqueFd fd(::open(wake.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    char byte;
    return ::read(fd.get(), &byte, 1) == 1;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(waiting_count)

BOOST_FIXTURE_TEST_CASE(a_release_with_nobody_waiting_writes_no_wake_up, CountFixture) {
  for (int i = 0; i < 3; ++i) {
    PackLockHold hold = lock.acquire();
    BOOST_TEST(hold.release().value() == 0);
  }
  BOOST_TEST(count() == 0);
  BOOST_TEST(!wake_pending());
}

BOOST_FIXTURE_TEST_CASE(a_waiter_of_another_process_is_counted_and_woken, CountFixture) {
  PackLockHold hold = lock.acquire();
  Process waiter = Process::child({"agent", pack.string()});
  waiter.write_line("acquire");
  BOOST_REQUIRE(eventually([&] { return count() == 1; }));
  hold.release();
  BOOST_TEST(waiter.wait_for("locked").has_value());
  BOOST_TEST(count() == 0);
  waiter.write_line("release");
  BOOST_TEST(waiter.wait_for("released").has_value());
}

// With the back-off at an hour, only the wake channel and inotify can end
// a wait: a wake-up lost to the count would show as a timeout.
BOOST_FIXTURE_TEST_CASE(no_release_is_missed_with_the_back_off_out_of_the_way, CountFixture) {
  std::error_code ec;
  const auto opened = detail::Pack::open(pack, LockOptions{}, ec);
  BOOST_REQUIRE(!ec);
  const detail::Backoff never{std::chrono::hours(1), std::chrono::hours(1), std::chrono::hours(1)};
  Process holder = Process::child({"agent", pack.string()});
  for (int round = 0; round < 200; ++round) {
    holder.write_line("acquire");
    BOOST_REQUIRE(holder.wait_for("locked").has_value());
    // Released while this process makes its first attempts, or waits.
    holder.write_line("release");
    // A lost wake-up ends the wait only at the deadline, where the attempt
    // then succeeds: reaching it is the failure.
    const auto deadline = detail::Clock::now() + std::chrono::seconds(10);
    auto hold = detail::acquire(opened, Mode::exclusive, deadline, ec, never);
    BOOST_REQUIRE_MESSAGE(!ec && detail::Clock::now() < deadline,
                          "round " << round << ": " << (ec ? ec.message() : "woken by the deadline"));
    BOOST_REQUIRE(holder.wait_for("released").has_value());
    hold->release();
  }
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
