// wait_cpu_10s: CPU time a waiter uses during 10 s of waiting, measured by
// the waiter itself (getrusage around its acquire). Baseline, for
// information: a waiter parked in the kernel's blocking flock, waiting at
// the same time on another pack.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <packlock/packlock.hpp>

#include "figure.hpp"
#include "scratch.hpp"

namespace packlock::bench {
namespace {

constexpr auto kWait = std::chrono::seconds(10);

struct Result {
  std::atomic<int> parked{0};
  double packlock_cpu_ms = 0;
  double kernel_cpu_ms = 0;
};

double cpu_ms() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

}  // namespace

void wait_cpu(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const auto ours = PackLock::open(scratch.path() / "ours");
  const auto theirs = PackLock::open(scratch.path() / "theirs");
  SharedMemory<Result> result;
  PackLockHold held_ours = ours.acquire();
  PackLockHold held_theirs = theirs.acquire();

  const pid_t packlock_waiter = fork_child([&] {
    const PackLock lock = PackLock::open(ours.pack());
    ++result->parked;
    const double before = cpu_ms();
    PackLockHold hold = lock.acquire();
    result->packlock_cpu_ms = cpu_ms() - before;
    return 0;
  });
  const pid_t kernel_waiter = fork_child([&] {
    const int fd = ::open(theirs.sidecar().c_str(), O_RDWR | O_CLOEXEC);
    ++result->parked;
    const double before = cpu_ms();
    while (::flock(fd, LOCK_EX) != 0) {
    }
    result->kernel_cpu_ms = cpu_ms() - before;
    return 0;
  });
  while (result->parked.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(kWait);
  held_ours.release();
  held_theirs.release();
  wait_child(packlock_waiter);
  wait_child(kernel_waiter);

  Figure figure{"wait_cpu_10s", result->packlock_cpu_ms, "ms", 0, "<= 1 ms"};
  figure.ok = figure.value <= 1;
  figure.note = "user+system CPU of the waiting process; a waiter in blocking flock used " +
                std::to_string(result->kernel_cpu_ms) + " ms";
  figures.push_back(figure);
}

}  // namespace packlock::bench
