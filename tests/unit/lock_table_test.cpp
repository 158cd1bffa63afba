// The in-process queue: FIFO service of waiters, only the head at the
// kernel, and hand-over when a waiter leaves.

#include <mutex>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "lock_table.hpp"
#include "pack.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct QueueFixture : PackDir {
  std::shared_ptr<detail::PackQueue> queue = queue_of(lock);

  std::mutex mutex;
  std::vector<int> order;

  // Starts waiter `id` and returns once it is queued, so start order is
  // queue order.
  std::thread start_waiter(int id, Mode mode, std::size_t queued_before) {
    std::thread waiter([this, id, mode] {
      PackLockHold hold = lock.acquire(mode, 30s);
      std::lock_guard guard(mutex);
      order.push_back(id);
    });
    BOOST_REQUIRE(eventually([&] { return queue->waiting() == queued_before + 1; }));
    return waiter;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(lock_table)

BOOST_FIXTURE_TEST_CASE(waiters_are_served_in_fifo_order, QueueFixture) {
  PackLockHold hold = lock.acquire();
  std::vector<std::thread> waiters;
  for (int id = 0; id < 8; ++id) waiters.push_back(start_waiter(id, Mode::exclusive, id));
  hold.release();
  for (auto& waiter : waiters) waiter.join();
  BOOST_TEST(order == (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}), boost::test_tools::per_element());
  BOOST_TEST(queue->waiting() == 0u);
  BOOST_TEST(queue->holding() == 0u);
}

BOOST_FIXTURE_TEST_CASE(an_exclusive_waiter_is_not_overtaken_by_later_shared_ones, QueueFixture) {
  PackLockHold hold = lock.acquire(Mode::shared);
  std::vector<std::thread> waiters;
  waiters.push_back(start_waiter(0, Mode::exclusive, 0));
  // A shared request would be compatible with the shared holder, but the
  // queue is not empty: it waits its turn.
  waiters.push_back(start_waiter(1, Mode::shared, 1));
  waiters.push_back(start_waiter(2, Mode::shared, 2));
  std::error_code ec;
  std::thread([&] { (void)lock.try_acquire(Mode::shared, ec); }).join();
  BOOST_TEST((ec == errc::busy));
  hold.release();
  for (auto& waiter : waiters) waiter.join();
  BOOST_TEST(order.front() == 0);
  BOOST_TEST(order.size() == 3u);
}

BOOST_FIXTURE_TEST_CASE(only_the_head_contends_at_the_kernel, QueueFixture) {
  // Another process holds: the head waits at the kernel level (one sidecar
  // descriptor, one inotify instance), the rest wait in the table.
  Process holder = Process::child({"hold", lock.pack().string(), "exclusive"});
  holder.expect_line("locked");
  const int before = open_fds_to(lock.sidecar().string());
  std::vector<std::thread> waiters;
  for (int id = 0; id < 6; ++id) waiters.push_back(start_waiter(id, Mode::exclusive, id));
  BOOST_REQUIRE(eventually([this] { return waiting_here(lock.pack()); }));
  // One descriptor at most for six waiters (the head may reuse the pack's
  // idle one); six contenders would need six.
  BOOST_TEST(open_fds_to(lock.sidecar().string()) <= before + 1);
  holder.close_stdin();
  for (auto& waiter : waiters) waiter.join();
  BOOST_TEST(order == (std::vector<int>{0, 1, 2, 3, 4, 5}), boost::test_tools::per_element());
  BOOST_TEST(holder.exit_code() == kChildOk);
}

BOOST_FIXTURE_TEST_CASE(a_head_that_times_out_hands_over_its_turn, QueueFixture) {
  Process holder = Process::child({"hold", lock.pack().string(), "exclusive"});
  holder.expect_line("locked");
  std::error_code head_ec;
  // The second waiter must queue while the head still waits: a generous
  // head timeout keeps that true on a loaded machine (REQUIRE below fails
  // loudly otherwise).
  std::thread head([&] { (void)lock.acquire(Mode::exclusive, 1s, head_ec); });
  BOOST_REQUIRE(eventually([&] { return queue->waiting() == 1; }));
  std::thread second = start_waiter(1, Mode::exclusive, 1);
  head.join();
  BOOST_TEST((head_ec == errc::timeout));
  // The second waiter is now the head: it gets the lock once the other
  // process lets go, or never if the turn was not handed over.
  holder.close_stdin();
  second.join();
  BOOST_TEST(order == std::vector<int>{1}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
