// async_waiters_1000: 1,000 async_acquire operations on one pack in one
// process, queued while the pack is held; all must be served, in FIFO
// order, with no lost wake-up. The figure is the time from the release to
// the last grant; for comparison, 1,000 uncontended try_acquire + release.

#include <asio/io_context.hpp>

#include <packlock/packlock.hpp>

#include "figure.hpp"
#include "scratch.hpp"

namespace packlock::bench {
namespace {

constexpr int kWaiters = 1000;

}  // namespace

void async_waiters(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const PackLock lock = PackLock::open(scratch.path() / "pack");
  asio::io_context io;
  std::vector<int> order;
  int failures = 0;
  PackLockHold first = lock.acquire();
  for (int id = 0; id < kWaiters; ++id) {
    lock.async_acquire(io.get_executor(), Mode::exclusive,
                       [&, id](std::error_code ec, PackLockHold hold) {
                         if (ec) ++failures;
                         order.push_back(id);
                         hold.release();
                       });
  }
  io.poll();  // every operation is queued
  const double start = now_ns();
  first.release();
  io.run_for(std::chrono::seconds(60));
  const double served_ms = (now_ns() - start) / 1e6;

  const double baseline_start = now_ns();
  for (int i = 0; i < kWaiters; ++i) lock.try_acquire().release();
  const double baseline_ms = (now_ns() - baseline_start) / 1e6;

  bool fifo = static_cast<int>(order.size()) == kWaiters;
  for (int i = 0; fifo && i < kWaiters; ++i) fifo = order[static_cast<std::size_t>(i)] == i;
  Figure figure{"async_waiters_1000", served_ms, "ms", baseline_ms,
                "all served, FIFO, no lost wake-up"};
  figure.ok = fifo && failures == 0;
  figure.note = std::to_string(order.size()) + " of " + std::to_string(kWaiters) +
                " served, " + (fifo ? "in FIFO order" : "NOT in FIFO order") + ", " +
                std::to_string(failures) + " errors; baseline: as many uncontended acquisitions";
  figures.push_back(figure);
}

}  // namespace packlock::bench
