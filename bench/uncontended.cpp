// uncontended_acquire_release: PackLock::try_acquire + release, exclusive,
// against the same system calls written directly: a descriptor opened once,
// then flock(LOCK_EX|LOCK_NB), the inode check (fstat, fstatat), flock(LOCK_UN).
// For information, the least a C loop that also keeps an owner record as
// the SPEC asks needs: flock, the path's inode alone (statx STATX_INO:
// asking for the timestamps, as fstat does, would make the next write
// dirty the inode on kernels with multigrain timestamps), one pwrite(2) of
// a 512-byte record, one pwrite(2) of blanks over it at release, unlock.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>

#include <packlock/packlock.hpp>

#include "figure.hpp"
#include "scratch.hpp"

namespace packlock::bench {
namespace {

constexpr int kIterations = 20000;
constexpr int kBatches = 9;

double packlock_batch(const PackLock& lock) {
  const double start = now_ns();
  for (int i = 0; i < kIterations; ++i) {
    PackLockHold hold = lock.try_acquire(Mode::exclusive);
    hold.release();
  }
  return (now_ns() - start) / kIterations;
}

double syscall_batch(int dir, int fd) {
  struct stat by_fd {}, by_path {};
  const double start = now_ns();
  for (int i = 0; i < kIterations; ++i) {
    ::flock(fd, LOCK_EX | LOCK_NB);
    ::fstat(fd, &by_fd);
    ::fstatat(dir, ".grex-lock", &by_path, AT_SYMLINK_NOFOLLOW);
    ::flock(fd, LOCK_UN);
  }
  return (now_ns() - start) / kIterations;
}

double syscall_batch_with_record(int dir, int fd) {
  struct statx by_path {};
  char record[512];
  char blank[512];
  std::fill(std::begin(record), std::end(record), 'r');
  std::fill(std::begin(blank), std::end(blank), ' ');
  const double start = now_ns();
  for (int i = 0; i < kIterations; ++i) {
    ::flock(fd, LOCK_EX | LOCK_NB);
    ::statx(dir, ".grex-lock", AT_SYMLINK_NOFOLLOW, STATX_INO, &by_path);
    [[maybe_unused]] const auto written = ::pwrite(fd, record, sizeof record, 0);
    [[maybe_unused]] const auto blanked = ::pwrite(fd, blank, sizeof blank, 0);
    ::flock(fd, LOCK_UN);
  }
  return (now_ns() - start) / kIterations;
}

}  // namespace

void uncontended(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const PackLock lock = PackLock::open(scratch.path() / "pack");
  const int dir = ::open(lock.pack().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const int fd = ::openat(dir, ".grex-lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  std::vector<double> ours, theirs, theirs_with_record;
  // Interleaved, so a noisy neighbour hurts all alike.
  for (int batch = 0; batch < kBatches; ++batch) {
    ours.push_back(packlock_batch(lock));
    theirs.push_back(syscall_batch(dir, fd));
    theirs_with_record.push_back(syscall_batch_with_record(dir, fd));
  }
  ::close(fd);
  ::close(dir);
  Figure figure{"uncontended_acquire_release", median(ours), "ns", median(theirs),
                "ratio <= 1.5"};
  figure.ok = figure.ratio() <= 1.5;
  const double with_record = median(theirs_with_record);
  figure.note = "median of " + std::to_string(kBatches) + " batches of " +
                std::to_string(kIterations) + "; baseline: flock+fstat+fstatat+unlock on one fd; " +
                "flock+statx(inode)+pwrite+pwrite(blank)+unlock, the least with a record blanked at release: " + std::to_string(static_cast<int>(with_record)) +
                " ns, " + std::to_string(with_record / figure.baseline).substr(0, 4) +
                "x the baseline (ours " + std::to_string(figure.value / with_record).substr(0, 4) +
                "x it)";
  figures.push_back(figure);
}

}  // namespace packlock::bench
