// counter_8x2000: 8 processes each increment a counter file 2,000 times
// under an exclusive lock; the count must come out exact. Baseline: the same
// processes and increments under a raw blocking flock(LOCK_EX) on a
// descriptor opened once, in the same run.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <packlock/packlock.hpp>

#include "figure.hpp"
#include "scratch.hpp"

namespace packlock::bench {
namespace {

constexpr int kProcesses = 8;
constexpr int kIncrements = 2000;

// Reads the decimal count at offset 0 and writes it back plus one.
bool increment(int counter) {
  char text[32] = {};
  if (::pread(counter, text, sizeof text - 1, 0) < 0) return false;
  const long next = std::strtol(text, nullptr, 10) + 1;
  const int length = std::snprintf(text, sizeof text, "%ld\n", next);
  return ::pwrite(counter, text, static_cast<std::size_t>(length), 0) == length;
}

long read_count(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  char text[32] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  ::close(fd);
  return n > 0 ? std::strtol(text, nullptr, 10) : 0;
}

int packlock_incrementer(const std::filesystem::path& pack, const std::filesystem::path& file) {
  const PackLock lock = PackLock::open(pack);
  const int counter = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
  for (int i = 0; i < kIncrements; ++i) {
    PackLockHold hold = lock.acquire(Mode::exclusive);
    if (!increment(counter)) return 1;
  }
  return 0;
}

// The baseline pays the SPEC's ghost-lock guard too: a statx(2) of the
// path after each lock.
int flock_incrementer(const std::filesystem::path& sidecar, const std::filesystem::path& file) {
  const int lock = ::open(sidecar.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  const int counter = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
  for (int i = 0; i < kIncrements; ++i) {
    while (::flock(lock, LOCK_EX) != 0) {
    }
    struct statx guard {};
    ::statx(AT_FDCWD, sidecar.c_str(), AT_SYMLINK_NOFOLLOW, STATX_INO, &guard);
    const bool ok = increment(counter);
    ::flock(lock, LOCK_UN);
    if (!ok) return 1;
  }
  return 0;
}

struct Run {
  double seconds = 0;
  long count = 0;
  bool children_ok = true;
};

Run run_processes(const std::filesystem::path& file, const std::function<int()>& body) {
  ::close(::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  const double start = now_ns();
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) children.push_back(fork_child(body));
  Run run;
  for (const pid_t child : children) run.children_ok &= wait_child(child) == 0;
  run.seconds = (now_ns() - start) / 1e9;
  run.count = read_count(file);
  return run;
}

}  // namespace

void counter(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const auto pack = scratch.path() / "pack";
  PackLock::open(pack);
  const auto file = scratch.path() / "counter";
  const Run raw = run_processes(file, [&] { return flock_incrementer(pack / ".grex-lock", file); });
  const Run ours = run_processes(file, [&] { return packlock_incrementer(pack, file); });
  constexpr long kExpected = long{kProcesses} * kIncrements;
  Figure figure{"counter_8x2000", ours.seconds * 1000, "ms", raw.seconds * 1000,
                "exact count; ratio <= 1.3 to flock + statx guard"};
  figure.ok = ours.count == kExpected && raw.count == kExpected && ours.children_ok &&
              raw.children_ok && figure.ratio() <= 1.3;
  figure.note = "count " + std::to_string(ours.count) + " of " + std::to_string(kExpected) +
                " (raw flock: " + std::to_string(raw.count) + ")";
  figures.push_back(figure);
}

}  // namespace packlock::bench
