#include "release_watch.hpp"

#include "heartbeat.hpp"
#include "inotify_relay.hpp"
#include "lock_table.hpp"
#include "waiter_registry.hpp"

#include <poll.h>
#include <sys/inotify.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace packlock::detail {
namespace {

constexpr std::uint32_t kReleaseEvents =
    IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

timespec to_timespec(std::chrono::nanoseconds d) noexcept {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(d);
  return {static_cast<time_t>(secs.count()), static_cast<long>((d - secs).count())};
}

// Idle inotify instances, with the watch they had, reused by later waits.
// Closing an instance or removing its watch delays the caller until the
// kernel has torn the mark down (75-150 us measured), which a waiter would
// pay right after it got its lock. Reuse also keeps the process far from the
// per-user instance limit (max_user_instances, 128 by default).
struct IdleInotify {
  UniqueFd fd;
  int wd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
};

class InotifyPool final {
 public:
  static InotifyPool& instance() {
    static InotifyPool* const pool = new InotifyPool;  // never destroyed
    return *pool;
  }

  // An instance watching (dev, ino) if there is one, else any idle one.
  IdleInotify take(dev_t dev, ino_t ino) noexcept {
    IdleInotify taken;
    {
      std::lock_guard lock(mutex_);
      forget_after_fork();
      auto it = std::find_if(idle_.begin(), idle_.end(),
                             [&](const IdleInotify& i) { return i.dev == dev && i.ino == ino; });
      if (it == idle_.end() && !idle_.empty()) it = idle_.end() - 1;
      if (it != idle_.end()) {
        taken = std::move(*it);
        idle_.erase(it);
      }
    }
    if (!taken.fd) taken.fd = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    // Events queued while idle must not wake the new user.
    alignas(inotify_event) std::array<char, 4096> buffer;
    while (taken.fd && ::read(taken.fd.get(), buffer.data(), buffer.size()) > 0) {
    }
    return taken;
  }

  void put(IdleInotify idle) noexcept {
    {
      std::lock_guard lock(mutex_);
      forget_after_fork();
      if (idle_.size() < kMaxIdle) {
        idle_.push_back(std::move(idle));
        return;
      }
    }
    // Not under the pool's lock: this takes the heartbeat registry's, which
    // a fork holds, and a child must not inherit the pool's taken.
    HeartbeatService::forget_relayed(idle.fd.get());  // closed on return
  }

 private:
  // Instances kept before a fork are shared with the other process: each
  // would read the other's events. Called with mutex_ held.
  void forget_after_fork() noexcept {
    if (generation_ == descriptor_epoch()) return;
    generation_ = descriptor_epoch();
    if (mutex_.left_held_by_fork()) {
      abandon(idle_);
      return;
    }
    idle_.clear();
  }

  static constexpr std::size_t kMaxIdle = 16;
  ForkSafeMutex mutex_;
  std::vector<IdleInotify> idle_;
  unsigned generation_ = descriptor_epoch();
};

}  // namespace

ReleaseWatch::ReleaseWatch(Backoff backoff, const WakeChannel* wake) noexcept
    : backoff_(backoff), wake_(wake), step_(backoff.first) {}

ReleaseWatch::~ReleaseWatch() {
  if (!inotify_) return;
  // The watch stays: removing it costs the waiter about 75 us right after
  // it got its lock (measured). The next wait through this instance
  // removes it if it watches another inode.
  InotifyPool::instance().put({std::move(inotify_), wd_, dev_, ino_});
}

bool ReleaseWatch::watch(const Sidecar& sidecar) noexcept {
  if (watching(sidecar)) return false;
  if (!inotify_) {
    IdleInotify idle = InotifyPool::instance().take(sidecar.dev, sidecar.ino);
    inotify_ = std::move(idle.fd);
    wd_ = idle.wd;
    dev_ = idle.dev;
    ino_ = idle.ino;
    // An idle watch of this inode saw events while nobody read them.
    if (wd_ >= 0 && dev_ == sidecar.dev && ino_ == sidecar.ino) return true;
  }
  if (!inotify_) return false;
  if (wd_ >= 0) ::inotify_rm_watch(inotify_.get(), wd_);
  // The descriptor's /proc link names exactly the inode we have open, even
  // if the path has been replaced since.
  const std::string link = "/proc/self/fd/" + std::to_string(sidecar.fd.get());
  wd_ = ::inotify_add_watch(inotify_.get(), link.c_str(), kReleaseEvents);
  dev_ = sidecar.dev;
  ino_ = sidecar.ino;
  step_ = backoff_.first;
  return wd_ >= 0;
}

bool ReleaseWatch::consume_events() noexcept {
  const bool woken = wake_ && wake_->drain();
  bool inotified = false;
  alignas(inotify_event) std::array<char, 4096> buffer;
  while (inotify_ && ::read(inotify_.get(), buffer.data(), buffer.size()) > 0) inotified = true;
  if (inotified) {
    step_ = backoff_.after_event;
  } else if (woken) {
    step_ = backoff_.first;
  }
  return woken || inotified;
}

std::chrono::nanoseconds ReleaseWatch::next_delay() noexcept {
  const auto delay = step_;
  step_ = std::min(step_ * 2, backoff_.cap);
  return delay;
}

std::chrono::nanoseconds ReleaseWatch::delay_until(const Deadline& deadline) noexcept {
  const auto delay = next_delay();
  if (!deadline) return delay;
  return std::min(delay, std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::max(*deadline - Clock::now(), Clock::duration::zero())));
}

bool ReleaseWatch::wait_until(const Deadline& deadline, int also) noexcept {
  // A descriptor of -1 is ignored: without any, ppoll only sleeps.
  pollfd fds[3] = {{inotify_.get(), POLLIN, 0}, {wake_handle(), POLLIN, 0}, {also, POLLIN, 0}};
  const timespec timeout = to_timespec(delay_until(deadline));
  return ::ppoll(fds, 3, &timeout, nullptr) > 0 &&
         ((fds[0].revents | fds[1].revents | fds[2].revents) & POLLIN) != 0;
}

void ReleaseWatch::sleep_until(const Deadline& deadline, const WaitingCount& count,
                               std::uint32_t seen, InotifyRelay* relay) noexcept {
  const bool relayed = inotify_ && relay && relay->arm(inotify_.get(), count);
  count.sleep(seen, delay_until(deadline));
  if (relayed) relay->disarm(inotify_.get());
}

}  // namespace packlock::detail
