// holds_10000_threads: 10,000 holds at once in one process, every one
// heartbeating every 100 ms; the figure is how many threads that adds (bar:
// at most 2). For information, the CPU the heartbeat uses per second of
// holding, and the oldest sidecar mtime at the end (every hold must be
// fresh).
//
// The holds are shared ones, 10 on each of 1,000 packs, taken with
// async_acquire on this thread (a thread may not hold one pack twice): a
// pack costs two descriptors besides its holds', and 10,000 packs would
// need more than the usual 20,000-descriptor limit.

#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <asio/io_context.hpp>

#include <packlock/packlock.hpp>

#include "figure.hpp"
#include "scratch.hpp"

namespace packlock::bench {
namespace {

constexpr int kPacks = 1000;
constexpr int kHoldsPerPack = 10;
constexpr auto kHeartbeat = std::chrono::milliseconds(100);
constexpr auto kWindow = std::chrono::seconds(3);

double cpu_ms() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

// The age of the oldest sidecar mtime, in milliseconds.
double oldest_mtime_ms(const std::vector<PackLock>& locks) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  double oldest = 0;
  for (const PackLock& lock : locks) {
    struct stat st {};
    if (::stat(lock.sidecar().c_str(), &st) != 0) return 1e9;
    const double age = (now.tv_sec - st.st_mtim.tv_sec) * 1e3 + (now.tv_nsec - st.st_mtim.tv_nsec) / 1e6;
    oldest = std::max(oldest, age);
  }
  return oldest;
}

}  // namespace

void holds(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const int threads_before = thread_count();
  LockOptions options;
  options.heartbeat = kHeartbeat;
  options.stale_after = 3 * kHeartbeat;
  std::vector<PackLock> locks;
  for (int i = 0; i < kPacks; ++i) {
    locks.push_back(PackLock::open(scratch.path() / ("pack" + std::to_string(i)), options));
  }
  asio::io_context io;
  std::vector<PackLockHold> held;
  int failures = 0;
  for (const PackLock& lock : locks) {
    for (int h = 0; h < kHoldsPerPack; ++h) {
      lock.async_acquire(io.get_executor(), Mode::shared, [&](std::error_code ec, PackLockHold hold) {
        if (ec) ++failures;
        held.push_back(std::move(hold));
      });
    }
  }
  io.run();
  const int extra_threads = thread_count() - threads_before;

  const double cpu_before = cpu_ms();
  std::this_thread::sleep_for(kWindow);
  const double heartbeat_cpu_per_s =
      (cpu_ms() - cpu_before) / std::chrono::duration<double>(kWindow).count();
  const double oldest = oldest_mtime_ms(locks);
  const std::size_t holding = held.size();
  held.clear();

  Figure figure{"holds_10000_threads", static_cast<double>(extra_threads), "threads", 0,
                "<= 2 extra threads"};
  figure.ok = extra_threads <= 2 && failures == 0 && holding == kPacks * kHoldsPerPack &&
              oldest < 3 * std::chrono::duration<double, std::milli>(kHeartbeat).count();
  figure.note = std::to_string(holding) + " holds (" + std::to_string(failures) +
                " failed) on " + std::to_string(kPacks) + " packs, heartbeat " +
                std::to_string(kHeartbeat.count()) + " ms; oldest mtime " +
                std::to_string(static_cast<int>(oldest)) + " ms";
  figures.push_back(figure);

  Figure cpu{"heartbeat_cpu_10000", heartbeat_cpu_per_s, "ms/s", 0, "(information)"};
  cpu.ok = true;
  cpu.note = "CPU per second of the process while the heartbeat serves those holds (the " +
             std::to_string(kHoldsPerPack) + " holds of a pack share one refresh and check: " +
             std::to_string(static_cast<int>(kPacks / std::chrono::duration<double>(kHeartbeat).count())) +
             " per second)";
  figures.push_back(cpu);
}

}  // namespace packlock::bench
