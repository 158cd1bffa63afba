#include "inotify_relay.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>

#include <cerrno>
#include <thread>
#include <utility>

#include "lock_table.hpp"
#include "waiter_registry.hpp"

namespace packlock::detail {

InotifyRelay* InotifyRelay::instance() noexcept { return get(true); }

InotifyRelay* InotifyRelay::running() noexcept { return get(false); }

InotifyRelay* InotifyRelay::get(bool start_one) noexcept {
  // One per process: a forked child has none of its parent's threads, so it
  // starts its own. The parent's object stays, inert, reachable from the
  // child's (a leak checker would report it otherwise).
  static std::mutex mutex;
  static InotifyRelay* relay = nullptr;
  static InotifyRelay* inherited = nullptr;
  static unsigned generation = fork_generation();
  std::lock_guard lock(mutex);
  if (generation != fork_generation()) {
    generation = fork_generation();
    if (relay) inherited = relay;
    relay = nullptr;
  }
  if (!relay && start_one) {
    relay = start();
    if (relay) relay->inherited_ = std::exchange(inherited, nullptr);
  }
  return relay;
}

InotifyRelay* InotifyRelay::start() noexcept try {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return nullptr;
  // Never destroyed: the thread sleeps in epoll_wait until the process ends.
  auto* relay = new InotifyRelay(std::move(epoll));
  // Born with every signal blocked: the process's signals are the
  // application's (as for the heartbeat thread).
  sigset_t all, previous;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  try {
    // Joinable, never joined (the object is never destroyed): the C library
    // of a forked child then keeps the thread's stack apart instead of
    // handing it to the child's next thread, which ThreadSanitizer would
    // take for the parent's thread, still alive.
    relay->thread_ = std::thread([relay] { relay->run(); });
  } catch (...) {
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    delete relay;
    return nullptr;
  }
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return relay;
} catch (...) {
  return nullptr;
}

void InotifyRelay::run() noexcept {
  ::pthread_setname_np(::pthread_self(), "packlock-relay");
  epoll_event events[16];
  for (;;) {
    const int n = ::epoll_wait(epoll_.get(), events, 16, -1);
    for (int i = 0; i < n; ++i) relay(events[i].data.fd);
    if (n < 0 && errno != EINTR) return;
  }
}

void InotifyRelay::relay(int inotify_fd) noexcept {
  // Under the mutex: disarm() returning means the count is no longer used.
  std::lock_guard lock(mutex_);
  const auto it = targets_.find(inotify_fd);
  if (it != targets_.end() && it->second) it->second->released();
}

bool InotifyRelay::arm(int inotify_fd, const WaitingCount& count) noexcept try {
  std::lock_guard lock(mutex_);
  epoll_event event{};
  event.events = EPOLLIN | EPOLLONESHOT;
  event.data.fd = inotify_fd;
  // Re-armed when the kernel knows it (an instance is armed once per
  // sleep), added the first time.
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, inotify_fd, &event) != 0 &&
      (errno != ENOENT || ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, inotify_fd, &event) != 0)) {
    targets_.erase(inotify_fd);
    return false;
  }
  targets_[inotify_fd] = &count;
  return true;
} catch (...) {
  return false;
}

void InotifyRelay::disarm(int inotify_fd) noexcept {
  std::lock_guard lock(mutex_);
  const auto it = targets_.find(inotify_fd);
  if (it != targets_.end()) it->second = nullptr;
}

void InotifyRelay::forget(int inotify_fd) noexcept {
  std::lock_guard lock(mutex_);
  if (targets_.erase(inotify_fd) != 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, inotify_fd, nullptr);
}

}  // namespace packlock::detail
