// handoff_p50 / handoff_p99: how long after a holder in one process
// releases does a waiter in another process own the lock. Baseline: the same
// two processes with waiters parked in the kernel's blocking flock(LOCK_EX).
// For information, a waiter that polls with the Go package's back-off
// (10 ms growing to 100 ms).
//
// Two processes take turns: the waiter announces the round and parks; the
// holder waits for the announcement, gives the waiter 1 ms to park, notes
// the time and releases; the waiter notes when it owns the lock. A process
// only starts waiting once the other owns the lock it waited for.

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <memory>
#include <thread>

#include <packlock/packlock.hpp>

#include "figure.hpp"
#include "scratch.hpp"

namespace packlock::bench {
namespace {

constexpr int kMaxRounds = 1000;
constexpr int kBlocks = 10;
constexpr int kWarmUpRounds = 2;

struct Rounds {
  std::atomic<int> first_holds{0};
  std::atomic<int> parked_round{-1};
  std::atomic<int> acquired_round{-1};
  std::atomic<double> released_at{0};
  double latency_ns[kMaxRounds] = {};
};

// How one process takes and drops the lock in one variant.
class Locker {
 public:
  virtual ~Locker() = default;
  virtual void acquire() = 0;
  virtual void release() = 0;
};

// As a program scopes its hold: the hold ends (released, then destroyed)
// where its scope does, not when the next acquisition replaces it.
class PackLockLocker final : public Locker {
 public:
  explicit PackLockLocker(const std::filesystem::path& pack) : lock_(PackLock::open(pack)) {}
  void acquire() override { hold_ = lock_.acquire(Mode::exclusive); }
  void release() override {
    hold_.release();
    hold_ = PackLockHold();
  }

 private:
  PackLock lock_;
  PackLockHold hold_;
};

// The baselines, written with plain system calls: each acquisition opens
// the sidecar, waits its own way for the lock, and release closes it, as
// flock(1) does.
class RawLocker : public Locker {
 public:
  explicit RawLocker(std::filesystem::path sidecar) : sidecar_(std::move(sidecar)) {}
  void acquire() final {
    fd_ = ::open(sidecar_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    wait_for_lock(fd_);
  }
  void release() final { ::close(fd_); }

 private:
  virtual void wait_for_lock(int fd) = 0;

  std::filesystem::path sidecar_;
  int fd_ = -1;
};

// Parked in the kernel's blocking flock.
class KernelLocker final : public RawLocker {
  using RawLocker::RawLocker;
  void wait_for_lock(int fd) override {
    while (::flock(fd, LOCK_EX) != 0) {
    }
  }
};

// The Go package's wait: non-blocking attempts with a 10-100 ms back-off.
class PollingLocker final : public RawLocker {
  using RawLocker::RawLocker;
  void wait_for_lock(int fd) override {
    auto delay = std::chrono::milliseconds(10);
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, std::chrono::milliseconds(100));
    }
  }
};

static_assert(std::atomic<std::uint32_t>::is_always_lock_free &&
              sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

using LockerFactory = std::function<std::unique_ptr<Locker>()>;

void wait_for(const std::atomic<int>& value, int wanted) {
  while (value.load() != wanted) std::this_thread::sleep_for(std::chrono::microseconds(20));
}

// Process `me` (0 or 1) plays its part in every round; process 0 starts holding.
int take_turns(int me, int rounds, const LockerFactory& make, Rounds& shared) {
  const auto locker = make();
  if (me == 0) {
    locker->acquire();
    shared.first_holds = 1;
  }
  wait_for(shared.first_holds, 1);
  for (int round = 0; round < rounds; ++round) {
    const bool holding = round % 2 == me;
    if (holding) {
      wait_for(shared.parked_round, round);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      shared.released_at = now_ns();
      locker->release();
    } else {
      // Not before the other process owns the lock it waited for in the
      // previous round: otherwise this one could take it back first.
      wait_for(shared.acquired_round, round - 1);
      shared.parked_round = round;
      locker->acquire();
      shared.latency_ns[round] = now_ns() - shared.released_at.load();
      shared.acquired_round = round;
    }
  }
  // The waiter of the last round holds; let it go.
  if ((rounds - 1) % 2 != me) locker->release();
  return 0;
}

std::vector<double> measure(int rounds, const LockerFactory& make) {
  SharedMemory<Rounds> shared;
  const pid_t first = fork_child([&] { return take_turns(0, rounds, make, *shared); });
  const pid_t second = fork_child([&] { return take_turns(1, rounds, make, *shared); });
  wait_child(first);
  wait_child(second);
  // The first round of each process opens its descriptors: warm-up.
  return {shared->latency_ns + kWarmUpRounds, shared->latency_ns + rounds};
}

void append(std::vector<double>& to, const std::vector<double>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

// For scripts/bench.sh --plot: one line per round, "kernel US" or
// "packlock US".
void write_samples(const char* file, const std::vector<double>& kernel,
                   const std::vector<double>& ours) {
  std::FILE* out = std::fopen(file, "w");
  if (!out) return;
  for (const double ns : kernel) std::fprintf(out, "kernel %.3f\n", ns / 1000);
  for (const double ns : ours) std::fprintf(out, "packlock %.3f\n", ns / 1000);
  std::fclose(out);
}

}  // namespace

void handoff(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const auto pack = scratch.path() / "pack";
  PackLock::open(pack);
  const auto sidecar = pack / ".grex-lock";
  // Alternate blocks of rounds, so that both variants see the same machine:
  // a shared, noisy host changes its wake-up latency from minute to minute.
  std::vector<double> kernel;
  std::vector<double> ours;
  for (int block = 0; block < kBlocks; ++block) {
    append(kernel, measure(kMaxRounds / kBlocks,
                           [&] { return std::make_unique<KernelLocker>(sidecar); }));
    append(ours, measure(kMaxRounds / kBlocks,
                         [&] { return std::make_unique<PackLockLocker>(pack); }));
  }
  if (const char* samples = std::getenv("PACKLOCK_BENCH_HANDOFF_SAMPLES")) {
    write_samples(samples, kernel, ours);
  }
  const auto polling = measure(40, [&] { return std::make_unique<PollingLocker>(sidecar); });
  const std::string info = "rounds " + std::to_string(kMaxRounds) + " in " + std::to_string(kBlocks) + " alternating blocks" +
                           "; Go-style 10-100 ms polling for information: p50 " +
                           std::to_string(static_cast<int>(median(polling) / 1000)) + " us, p99 " +
                           std::to_string(static_cast<int>(percentile(polling, 0.99) / 1000)) +
                           " us";
  for (const auto& [name, p] : {std::pair{"handoff_p50", 0.5}, std::pair{"handoff_p99", 0.99}}) {
    Figure figure{name, percentile(ours, p) / 1000, "us", percentile(kernel, p) / 1000,
                  "ratio <= 1.5 to blocking flock"};
    figure.ok = figure.ratio() <= 1.5;
    figure.note = info;
    figures.push_back(figure);
  }
}

}  // namespace packlock::bench
