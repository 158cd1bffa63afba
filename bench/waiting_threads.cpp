// waiting_threads: the threads that waiting adds to a process, once with
// 1,000 async waiters on one pack and once with one async waiter on each of
// 100 packs, every pack held by another descriptor (bar: at most one per
// pack waited on). Counted once every wait is parked in the kernel, as
// /proc/locks shows; then the holders let go and every waiter must be
// served.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>

#include <asio/io_context.hpp>

#include <packlock/packlock.hpp>

#include "figure.hpp"
#include "scratch.hpp"

namespace packlock::bench {
namespace {

struct Count {
  int threads_added = 0;
  int served = 0;
  int errors = 0;
  bool parked = true;
};

// `waiters` async waiters on each of `packs` packs.
Count count_threads(const std::filesystem::path& root, int packs, int waiters) {
  std::vector<PackLock> locks;
  std::vector<int> holders;
  for (int i = 0; i < packs; ++i) {
    locks.push_back(PackLock::open(root / ("pack" + std::to_string(i))));
    holders.push_back(::open(locks.back().sidecar().c_str(), O_RDWR | O_CLOEXEC));
    ::flock(holders.back(), LOCK_EX);
  }
  const int before = thread_count();
  asio::io_context io;
  Count count;
  std::vector<PackLockHold> held;
  for (const PackLock& lock : locks) {
    for (int w = 0; w < waiters; ++w) {
      lock.async_acquire(io.get_executor(), Mode::shared, [&](std::error_code ec, PackLockHold hold) {
        if (ec) ++count.errors;
        ++count.served;
        held.push_back(std::move(hold));
      });
    }
  }
  io.poll();
  for (const PackLock& lock : locks) {
    struct stat st {};
    ::stat(lock.sidecar().c_str(), &st);
    // A waiter thread per pack: one blocked request of this process each.
    count.parked &= await_blocked_requests(st.st_ino, ::getpid(), 1);
  }
  count.threads_added = thread_count() - before;
  for (const int fd : holders) ::close(fd);
  io.run_for(std::chrono::seconds(60));
  return count;
}

}  // namespace

void waiting_threads(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const Count one_pack = count_threads(scratch.path() / "one", 1, 1000);
  const Count many_packs = count_threads(scratch.path() / "many", 100, 1);
  const double per_pack =
      std::max(one_pack.threads_added / 1.0, many_packs.threads_added / 100.0);
  Figure figure{"waiting_threads", per_pack, "threads/pack", 0, "<= 1 per pack waited on"};
  figure.ok = per_pack <= 1 && one_pack.parked && many_packs.parked &&
              one_pack.served == 1000 && many_packs.served == 100 && one_pack.errors == 0 &&
              many_packs.errors == 0;
  figure.note = "1,000 waiters on 1 pack: " + std::to_string(one_pack.threads_added) +
                " threads added, " + std::to_string(one_pack.served) + " served; " +
                "1 waiter on each of 100 packs: " + std::to_string(many_packs.threads_added) +
                " threads added, " + std::to_string(many_packs.served) + " served" +
                (one_pack.parked && many_packs.parked ? "" : "; NOT every wait parked");
  figures.push_back(figure);
}

}  // namespace packlock::bench
