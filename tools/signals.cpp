#include "signals.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace packlock::cli {
namespace {

// The handler's only state: where to write.
std::atomic<int> g_write_fd{-1};

struct Record {
  unsigned char signo;
  unsigned char from_kernel;
};

void on_signal(int signo, siginfo_t* info, void*) {
  const int saved_errno = errno;
  const Record record{static_cast<unsigned char>(signo),
                      static_cast<unsigned char>(info != nullptr && info->si_code == SI_KERNEL)};
  // A full pipe already wakes the reader; the record may be dropped then.
  [[maybe_unused]] const auto written = ::write(g_write_fd.load(), &record, sizeof record);
  errno = saved_errno;
}

bool ignored_now(int signo) {
  struct sigaction current {};
  ::sigaction(signo, nullptr, &current);
  return current.sa_handler == SIG_IGN;
}

}  // namespace

bool is_stop_signal(int signo) noexcept {
  return std::find(kStopSignals.begin(), kStopSignals.end(), signo) != kStopSignals.end();
}

SignalCatcher::SignalCatcher(std::initializer_list<int> signals) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw std::system_error(errno, std::system_category(), "signal pipe");
  }
  read_end_ = detail::UniqueFd(ends[0]);
  write_end_ = detail::UniqueFd(ends[1]);
  g_write_fd = write_end_.get();
  struct sigaction action {};
  action.sa_sigaction = on_signal;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (const int signo : signals) {
    // SIGCHLD is never "ignored" on purpose here: run must reap its child.
    if (signo != SIGCHLD && ignored_now(signo)) continue;
    Saved saved{signo, {}};
    ::sigaction(signo, &action, &saved.action);
    saved_.push_back(saved);
  }
}

SignalCatcher::~SignalCatcher() {
  for (const Saved& saved : saved_) ::sigaction(saved.signo, &saved.action, nullptr);
  g_write_fd = -1;
}

std::vector<SignalCatcher::Caught> SignalCatcher::take() {
  std::vector<Caught> caught;
  Record record{};
  while (::read(read_end_.get(), &record, sizeof record) == sizeof record) {
    caught.push_back({record.signo, record.from_kernel != 0});
  }
  return caught;
}

std::vector<SignalCatcher::Caught> SignalCatcher::wait(int timeout_ms, int also) {
  pollfd readable[2] = {{read_end_.get(), POLLIN, 0}, {also, POLLIN, 0}};
  if (::poll(readable, 2, timeout_ms) < 0 && errno != EINTR) {
    throw std::system_error(errno, std::system_category(), "poll");
  }
  return take();
}

void SignalCatcher::restore_in_child() const noexcept {
  for (const Saved& saved : saved_) ::sigaction(saved.signo, &saved.action, nullptr);
}

}  // namespace packlock::cli
