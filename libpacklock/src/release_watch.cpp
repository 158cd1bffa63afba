#include "release_watch.hpp"

#include <poll.h>
#include <sys/inotify.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>

namespace packlock::detail {
namespace {

constexpr std::uint32_t kReleaseEvents =
    IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

timespec to_timespec(std::chrono::nanoseconds d) noexcept {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(d);
  return {static_cast<time_t>(secs.count()), static_cast<long>((d - secs).count())};
}

}  // namespace

ReleaseWatch::ReleaseWatch(Backoff backoff) noexcept
    : backoff_(backoff), step_(backoff.first) {}

void ReleaseWatch::watch(const Sidecar& sidecar) noexcept {
  if (wd_ >= 0 && dev_ == sidecar.dev && ino_ == sidecar.ino) return;
  if (!inotify_) inotify_ = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_) return;
  if (wd_ >= 0) ::inotify_rm_watch(inotify_.get(), wd_);
  // The descriptor's /proc link names exactly the inode we have open, even
  // if the path has been replaced since.
  const std::string link = "/proc/self/fd/" + std::to_string(sidecar.fd.get());
  wd_ = ::inotify_add_watch(inotify_.get(), link.c_str(), kReleaseEvents);
  dev_ = sidecar.dev;
  ino_ = sidecar.ino;
  step_ = backoff_.first;
}

bool ReleaseWatch::consume_events() noexcept {
  if (!inotify_) return false;
  alignas(inotify_event) std::array<char, 4096> buffer;
  bool any = false;
  while (::read(inotify_.get(), buffer.data(), buffer.size()) > 0) any = true;
  if (any) step_ = backoff_.first;
  return any;
}

std::chrono::nanoseconds ReleaseWatch::next_delay() noexcept {
  const auto delay = step_;
  step_ = std::min(step_ * 2, backoff_.cap);
  return delay;
}

bool ReleaseWatch::wait_until(const Deadline& deadline) noexcept {
  auto delay = next_delay();
  if (deadline) {
    delay = std::min(delay, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::max(*deadline - Clock::now(), Clock::duration::zero())));
  }
  pollfd pfd{inotify_.get(), POLLIN, 0};
  const timespec timeout = to_timespec(delay);
  // inotify_.get() is -1 without a watch: ppoll then only sleeps.
  return ::ppoll(&pfd, 1, &timeout, nullptr) > 0;
}

}  // namespace packlock::detail
