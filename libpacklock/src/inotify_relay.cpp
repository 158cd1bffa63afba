#include "inotify_relay.hpp"

#include <sys/epoll.h>

#include <cerrno>

#include "waiter_registry.hpp"

namespace packlock::detail {

bool InotifyRelay::open() noexcept {
  if (!epoll_) epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  return static_cast<bool>(epoll_);
}

void InotifyRelay::relay_fired() noexcept {
  epoll_event events[16];
  int n = 0;
  do {
    n = ::epoll_wait(epoll_.get(), events, 16, 0);
    // Under the mutex: disarm() returning means the count is no longer used.
    std::lock_guard lock(mutex_);
    for (int i = 0; i < n; ++i) {
      const auto it = targets_.find(events[i].data.fd);
      if (it != targets_.end() && it->second) it->second->released();
    }
  } while (n == 16);
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
