#include "kernel_wait.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>

#include <packlock/error.hpp>

#include "fork.hpp"
#include "unique_fd.hpp"

namespace packlock::detail {
namespace {

// What makes a waiter look at the path again: an unlink (the link count,
// IN_ATTRIB), a rename of the inode, its deletion. A heartbeat sets the
// mtime alone, which inotify reports as IN_MODIFY: it wakes nobody.
constexpr std::uint32_t kSidecarChanges = IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;

// How often a signal is sent again while the waiter has not let go: one
// sent just before the thread entered flock(2) interrupted nothing.
constexpr long kRetryNanoseconds = 1'000'000;

// What the handler needs of the thread it runs on; plain data, so that a
// handler may touch it (initial-exec: no allocation on first access).
struct HandlerView {
  timer_t timer{};
  volatile sig_atomic_t in_wait = 0;  // between O_ASYNC on and leaving flock(2)
  volatile sig_atomic_t came = 0;     // a signal came during the wait
};
thread_local HandlerView handler_view __attribute__((tls_model("initial-exec")));

// An inotify signal may come between the drain and the entry into flock(2),
// where it interrupts nothing: the handler then has the thread's timer
// fire again (timer_settime is async-signal-safe) until the wait ends.
void on_wait_signal(int) {
  const int saved = errno;
  if (handler_view.in_wait) {
    handler_view.came = 1;
    itimerspec again{};
    again.it_value.tv_nsec = kRetryNanoseconds;
    again.it_interval.tv_nsec = kRetryNanoseconds;
    ::timer_settime(handler_view.timer, 0, &again, nullptr);
  }
  errno = saved;
}

// The signals whose handler is ours. The mutex only serialises the first
// installation of each; a fork while it is held leaves the child a fresh one.
std::array<std::atomic<bool>, NSIG> installed{};
std::mutex install_mutex;
[[maybe_unused]] const int install_fork_handlers = ::pthread_atfork(
    [] { install_mutex.lock(); }, [] { install_mutex.unlock(); },
    [] { install_mutex.unlock(); });

// Installs the do-nothing handler, without SA_RESTART so that flock(2)
// returns EINTR, unless the application has a disposition of its own.
bool install_wait_signal(int signo) noexcept {
  if (signo <= 0 || signo >= NSIG) return false;
  if (installed[signo].load(std::memory_order_acquire)) return true;
  std::lock_guard lock(install_mutex);
  struct sigaction current {};
  if (::sigaction(signo, nullptr, &current) != 0) return false;
  const bool ours = !(current.sa_flags & SA_SIGINFO) && current.sa_handler == on_wait_signal;
  if (!ours) {
    if (current.sa_flags & SA_SIGINFO || current.sa_handler != SIG_DFL) return false;
    struct sigaction action {};
    action.sa_handler = on_wait_signal;
    ::sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    if (::sigaction(signo, &action, nullptr) != 0) return false;
  }
  installed[signo].store(true, std::memory_order_release);
  return true;
}

timespec nanoseconds_to_timespec(std::chrono::nanoseconds d) noexcept {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(d);
  return {static_cast<time_t>(seconds.count()), static_cast<long>((d - seconds).count())};
}

// "RTMIN+N", "RTMAX-N" (with or without "SIG") or a plain number.
int parse_signal(std::string_view text) noexcept {
  if (text.substr(0, 3) == "SIG") text.remove_prefix(3);
  const auto number = [](std::string_view digits) {
    if (digits.empty() || digits.size() > 3) return -1;
    int value = 0;
    for (const char c : digits) {
      if (c < '0' || c > '9') return -1;
      value = value * 10 + (c - '0');
    }
    return value;
  };
  int signo = -1;
  if (text.substr(0, 6) == "RTMIN+") {
    signo = SIGRTMIN + number(text.substr(6));
  } else if (text.substr(0, 6) == "RTMAX-") {
    signo = SIGRTMAX - number(text.substr(6));
  } else if (text == "RTMIN") {
    signo = SIGRTMIN;
  } else if (text == "RTMAX") {
    signo = SIGRTMAX;
  } else {
    signo = number(text);
  }
  return signo >= SIGRTMIN && signo <= SIGRTMAX ? signo : 0;
}

}  // namespace

int default_wait_signal() noexcept {
  if (const char* chosen = std::getenv("PACKLOCK_WAIT_SIGNAL")) return parse_signal(chosen);
  return SIGRTMAX - 3;
}

std::string wait_signal_name(int signo) {
  if (signo >= SIGRTMIN && SIGRTMAX - signo < signo - SIGRTMIN) {
    return "SIGRTMAX-" + std::to_string(SIGRTMAX - signo);
  }
  if (signo >= SIGRTMIN) return "SIGRTMIN+" + std::to_string(signo - SIGRTMIN);
  return "signal " + std::to_string(signo);
}

// A thread's means of being woken: its timer and inotify instance, made at
// its first wait and kept until it exits (closing an inotify instance that
// had watches stalls until the kernel has torn them down, so it is not
// done per wait). Only its own thread uses it but for kick(), which a
// WaitInterrupt calls under its mutex while the thread is inside.
class ThreadWait final {
 public:
  ThreadWait() noexcept = default;
  ThreadWait(const ThreadWait&) = delete;
  ThreadWait& operator=(const ThreadWait&) = delete;
  ~ThreadWait() { forget(); }

  WaitEnd wait(const Sidecar& sidecar, Mode mode, const Deadline& wake_at,
               WaitInterrupt* interrupt, int signo, std::error_code& ec) noexcept;

  // Fires the timer now, and again every kRetryNanoseconds.
  void kick() noexcept {
    itimerspec now{};
    now.it_value.tv_nsec = 1;
    now.it_interval.tv_nsec = kRetryNanoseconds;
    ::timer_settime(timer_, 0, &now, nullptr);
    kicked_ = true;
  }

 private:
  bool prepare(int signo) noexcept;
  void forget() noexcept;
  bool watch(const Sidecar& sidecar) noexcept;
  bool events_pending() noexcept;
  void set_async(bool on) noexcept;
  void arm(Clock::time_point at) noexcept;
  void disarm() noexcept;
  bool enter(WaitInterrupt* interrupt) noexcept;
  void leave(WaitInterrupt* interrupt) noexcept;

  unsigned generation_ = 0;  // the fork generation the timer belongs to
  int signo_ = 0;            // 0: nothing made yet
  timer_t timer_{};
  UniqueFd inotify_;
  int watched_wd_ = -1;
  dev_t watched_dev_ = 0;
  ino_t watched_ino_ = 0;
  bool armed_ = false;
  bool kicked_ = false;  // guarded by the interrupt's mutex while inside
};

namespace {
thread_local ThreadWait this_thread_wait;
}  // namespace

void ThreadWait::forget() noexcept {
  // A forked child has no timers, and shares the inotify instance with a
  // parent that owns it: it closes its copy and makes its own.
  if (signo_ != 0 && generation_ == fork_generation()) ::timer_delete(timer_);
  inotify_.reset();
  signo_ = 0;
  watched_dev_ = 0;
  watched_ino_ = 0;
}

bool ThreadWait::prepare(int signo) noexcept {
  if (signo_ == signo && generation_ == fork_generation()) return true;
  forget();
  const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  sigevent event{};
  event.sigev_notify = SIGEV_THREAD_ID;
  event.sigev_signo = signo;
  event._sigev_un._tid = tid;
  if (::timer_create(CLOCK_MONOTONIC, &event, &timer_) != 0) return false;
  signo_ = signo;
  generation_ = fork_generation();
  // Without inotify (the per-user limit of instances), a replaced sidecar
  // is seen at the next stale check or deadline instead of at once.
  inotify_ = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (inotify_) {
    const f_owner_ex owner{F_OWNER_TID, tid};
    if (::fcntl(inotify_.get(), F_SETOWN_EX, &owner) != 0 ||
        ::fcntl(inotify_.get(), F_SETSIG, signo) != 0) {
      inotify_.reset();
    }
  }
  return true;
}

// Watches the inode `sidecar` has open; true when the watch is new, so
// that an event before it was missed. The watch of an earlier inode stays:
// removing one stalls, and it goes with its inode.
bool ThreadWait::watch(const Sidecar& sidecar) noexcept {
  if (!inotify_ || (sidecar.dev == watched_dev_ && sidecar.ino == watched_ino_)) return false;
  // The descriptor's /proc link names exactly the inode we wait on.
  std::array<char, 32> link;
  std::snprintf(link.data(), link.size(), "/proc/self/fd/%d", sidecar.fd.get());
  watched_wd_ = ::inotify_add_watch(inotify_.get(), link.data(), kSidecarChanges);
  if (watched_wd_ < 0) return false;
  watched_dev_ = sidecar.dev;
  watched_ino_ = sidecar.ino;
  return true;
}

// Drains the events that came while O_ASYNC was off: true if there were.
// A watch the kernel dropped (IN_IGNORED: its inode is gone) is forgotten,
// for the number may name a new sidecar next.
bool ThreadWait::events_pending() noexcept {
  if (!inotify_) return false;
  alignas(inotify_event) std::array<char, 1024> buffer;
  bool any = false;
  ssize_t n;
  while ((n = ::read(inotify_.get(), buffer.data(), buffer.size())) > 0) {
    any = true;
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer.data() + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if ((event->mask & IN_IGNORED) && event->wd == watched_wd_) {
        watched_dev_ = 0;
        watched_ino_ = 0;
      }
    }
  }
  return any;
}

void ThreadWait::set_async(bool on) noexcept {
  if (inotify_) ::fcntl(inotify_.get(), F_SETFL, O_NONBLOCK | (on ? O_ASYNC : 0));
}

void ThreadWait::arm(Clock::time_point at) noexcept {
  itimerspec when{};
  when.it_value = nanoseconds_to_timespec(std::max(
      at.time_since_epoch(), std::chrono::nanoseconds(1)));
  when.it_interval.tv_nsec = kRetryNanoseconds;
  armed_ = ::timer_settime(timer_, TIMER_ABSTIME, &when, nullptr) == 0;
}

void ThreadWait::disarm() noexcept {
  const itimerspec off{};
  ::timer_settime(timer_, 0, &off, nullptr);
  armed_ = false;
}

bool ThreadWait::enter(WaitInterrupt* interrupt) noexcept {
  if (!interrupt) return true;
  std::lock_guard lock(interrupt->mutex_);
  if (interrupt->interrupted_) return false;
  interrupt->inside_ = this;
  kicked_ = false;
  return true;
}

void ThreadWait::leave(WaitInterrupt* interrupt) noexcept {
  bool kicked = false;
  if (interrupt) {
    std::lock_guard lock(interrupt->mutex_);
    interrupt->inside_ = nullptr;
    kicked = kicked_;
  }
  if (armed_ || kicked) disarm();
}

WaitEnd ThreadWait::wait(const Sidecar& sidecar, Mode mode, const Deadline& wake_at,
                         WaitInterrupt* interrupt, int signo, std::error_code& ec) noexcept {
  if (!prepare(signo)) {
    ec.assign(errno, std::system_category());
    return WaitEnd::failed;
  }
  const bool new_watch = watch(sidecar);
  handler_view.timer = timer_;
  handler_view.came = 0;
  handler_view.in_wait = 1;
  set_async(true);
  if (events_pending() || new_watch) {
    set_async(false);
    handler_view.in_wait = 0;
    if (handler_view.came) disarm();
    return WaitEnd::woken;  // the caller looks at the path first
  }
  sigset_t ours, previous;
  ::sigemptyset(&ours);
  ::sigaddset(&ours, signo);
  ::pthread_sigmask(SIG_UNBLOCK, &ours, &previous);
  // Armed before the interrupt can see the thread inside: a kick must come
  // after it, or it would be overwritten. A signal that came before the
  // timer was armed had its retry overwritten too, hence the check of
  // `came` after; one after that check has the timer fire again.
  if (wake_at) arm(*wake_at);
  int rc = -1;
  int err = EINTR;
  if (enter(interrupt)) {
    if (!handler_view.came) {
      rc = ::flock(sidecar.fd.get(), mode == Mode::exclusive ? LOCK_EX : LOCK_SH);
      err = errno;
    }
    leave(interrupt);
  } else if (armed_) {
    disarm();
  }
  set_async(false);
  handler_view.in_wait = 0;
  if (handler_view.came) disarm();
  if (::sigismember(&previous, signo) == 1) ::pthread_sigmask(SIG_BLOCK, &ours, nullptr);
  if (rc == 0) return WaitEnd::granted;
  if (err == EINTR) return WaitEnd::woken;
  ec.assign(err, std::system_category());
  return WaitEnd::failed;
}

void WaitInterrupt::interrupt() noexcept {
  std::lock_guard lock(mutex_);
  interrupted_ = true;
  if (inside_) inside_->kick();
}

bool WaitInterrupt::interrupted() const noexcept {
  std::lock_guard lock(mutex_);
  return interrupted_;
}

WaitEnd wait_in_kernel(const Sidecar& sidecar, Mode mode, const Deadline& wake_at,
                       WaitInterrupt* interrupt, int signo, std::error_code& ec) noexcept {
  ec.clear();
  if (!install_wait_signal(signo)) {
    ec = errc::wait_signal_taken;
    return WaitEnd::failed;
  }
  return this_thread_wait.wait(sidecar, mode, wake_at, interrupt, signo, ec);
}

}  // namespace packlock::detail
