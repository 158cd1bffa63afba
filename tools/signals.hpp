#pragma once
// Signals as events: a SignalCatcher turns each caught signal into a record
// on a pipe, so that run's wait (Asio), its child loop (poll), probe --wait
// and status --watch handle signals as input, never inside a handler.

#include <signal.h>

#include <array>
#include <initializer_list>
#include <vector>

#include "unique_fd.hpp"

namespace packlock::cli {

// The signals that end a wait or a watch.
inline constexpr std::array kStopSignals{SIGINT, SIGTERM, SIGHUP, SIGQUIT};
// What run forwards to its command (SPEC section 3).
inline constexpr std::array kForwardedSignals{SIGINT,  SIGTERM, SIGHUP, SIGQUIT,
                                              SIGUSR1, SIGUSR2, SIGWINCH};

bool is_stop_signal(int signo) noexcept;

// One per process at a time (a signal's handler is process-wide); restores
// the previous dispositions when destroyed. A signal that was ignored when
// packlock started stays ignored and is not caught: whoever started it
// (nohup, a non-interactive shell's `&` for SIGINT and SIGQUIT) asked for
// that, and the command inherits it too.
class SignalCatcher final {
 public:
  struct Caught {
    int signo = 0;
    // Sent by the kernel, such as a terminal's SIGINT or SIGWINCH, which
    // reaches the whole foreground process group: run's command already
    // got it.
    bool from_kernel = false;
  };

  explicit SignalCatcher(std::initializer_list<int> signals);
  SignalCatcher(const SignalCatcher&) = delete;
  SignalCatcher& operator=(const SignalCatcher&) = delete;
  ~SignalCatcher();

  // Readable when a signal was caught.
  int fd() const noexcept { return read_end_.get(); }
  // The signals caught since the last call, in order; never blocks.
  std::vector<Caught> take();
  // Waits up to `timeout_ms` (-1: forever) for a signal, or until `also`
  // (when not -1) is readable; EINTR is not a signal.
  std::vector<Caught> wait(int timeout_ms, int also = -1);

  // In a forked child before exec: the dispositions packlock found at
  // start. Async-signal-safe.
  void restore_in_child() const noexcept;

 private:
  struct Saved {
    int signo;
    struct sigaction action;
  };
  std::vector<Saved> saved_;
  detail::UniqueFd read_end_;
  detail::UniqueFd write_end_;
};

}  // namespace packlock::cli
