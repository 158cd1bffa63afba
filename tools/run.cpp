// packlock run: takes the lock of a pack, runs a command as its child while
// holding it, and exits with the command's status.

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <packlock/error.hpp>
#include <packlock/pack_lock.hpp>

#include "child.hpp"
#include "cluster_run.hpp"
#include "duration.hpp"
#include "exit_codes.hpp"
#include "options.hpp"
#include "output.hpp"
#include "pack_view.hpp"
#include "signals.hpp"
#include "subcommands.hpp"

namespace packlock::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kSynopsis =
    "  packlock run [OPTIONS] PACK [--] COMMAND [ARG...]\n"
    "  packlock run [OPTIONS] PACK -c 'SHELL COMMAND'";
constexpr const char* kSummary =
    "Run a command while holding the lock of PACK (flock(2) on PACK/.grex-lock).";
constexpr const char* kFooter =
    "Exit status: the command's; 75 (-E) when the lock is busy or the wait timed out;\n"
    "64 usage, 66 no such pack, 71 system error, 73 cannot create the lock file,\n"
    "77 permission denied, 126 cannot run, 127 not found, 128+N killed by signal N.\n"
    "See packlock-run(1).";

struct RunOptions {
  std::filesystem::path pack;
  std::vector<std::string> command;  // argv of the command
  Mode mode = Mode::exclusive;
  bool nonblock = false;
  std::optional<std::chrono::nanoseconds> timeout;
  int conflict_exit = kExitConflict;
  LockSettings lock;
  ClusterSettings cluster;
  bool verbose = false;
  bool quiet = false;
};

// Everything from PACK on is positional, so that the command's own options
// (`packlock run PACK ls -l`) are not taken for packlock's. Program_options
// also calls this with a single token to ask whether an option's value
// looks like an option; a single token is left to its own rules, which
// make a lone last PACK positional all the same.
std::vector<po::option> rest_from_pack(std::vector<std::string>& args) {
  if (args.size() < 2 || args[0].empty() || (args[0].size() > 1 && args[0][0] == '-')) return {};
  std::vector<po::option> rest;
  for (const std::string& arg : args) {
    po::option positional;
    positional.value.push_back(arg);
    positional.original_tokens.push_back(arg);
    positional.position_key = INT_MAX;  // any position; numbered by the parser
    rest.push_back(positional);
  }
  args.clear();
  return rest;
}

// flock(1) runs -c commands with $SHELL, falling back to /bin/sh.
std::vector<std::string> shell_command(const std::string& text) {
  const char* shell = std::getenv("SHELL");
  return {shell != nullptr && *shell != '\0' ? shell : "/bin/sh", "-c", text};
}

// PACK's arguments after it: [--] COMMAND [ARG...] or -c 'SHELL COMMAND'.
std::vector<std::string> command_from(std::vector<std::string> rest,
                                      const std::optional<std::string>& shell_text) {
  if (!rest.empty() && rest.front() == "--") {
    rest.erase(rest.begin());
  } else if (!rest.empty() && (rest.front() == "-c" || rest.front() == "--command")) {
    if (shell_text) throw UsageError("-c given twice");
    if (rest.size() != 2) throw UsageError("-c takes exactly one argument, the shell command");
    return shell_command(rest[1]);
  }
  if (shell_text && !rest.empty()) throw UsageError("both -c and a command given");
  if (shell_text) return shell_command(*shell_text);
  if (rest.empty()) throw UsageError("no command given");
  return rest;
}

struct Flags {
  bool shared = false, exclusive = false, help = false;
  std::optional<Duration> timeout;
  std::optional<std::string> shell_text;
  std::vector<std::string> positional;  // PACK and what follows it
};

po::options_description describe_options(RunOptions& options, Flags& flags) {
  po::options_description described("packlock run");
  described.add_options()
    ("shared,s", po::bool_switch(&flags.shared), "take a shared lock")
    ("exclusive,x", po::bool_switch(&flags.exclusive), "take an exclusive lock (the default)")
    ("nonblock,n", po::bool_switch(&options.nonblock), "fail at once if the lock is busy")
    ("timeout,w", po::value<Duration>()->value_name("DUR")->notifier(
         [&](const Duration& d) { flags.timeout = d; }),
     "give up after waiting DUR (0: as -n)")
    ("conflict-exit-code,E", po::value(&options.conflict_exit)->value_name("N"),
     "exit code when busy or timed out (default 75)")
    ("command,c", po::value<std::string>()->value_name("CMD")->notifier(
         [&](const std::string& text) { flags.shell_text = text; }),
     "run CMD with the shell ($SHELL, else /bin/sh)");
  add_lock_options(described, options.lock);
  add_cluster_options(described, options.cluster,
                      "also hold a lock of this etcd cluster (host:port,...; default: "
                      "PACKLOCK_ETCD_ENDPOINTS)");
  add_cluster_key_option(described, options.cluster);
  described.add_options()
    ("verbose,v", po::bool_switch(&options.verbose),
     "say what it waits for, how long it took, what it runs")
    ("quiet,q", po::bool_switch(&options.quiet), "print nothing but errors")
    ("help,h", po::bool_switch(&flags.help), "show this help and exit");
  return described;
}

void check(const RunOptions& options, const Flags& flags) {
  if (flags.shared && flags.exclusive) throw UsageError("-s and -x contradict each other");
  if (options.nonblock && flags.timeout) throw UsageError("-n and -w contradict each other");
  if (options.verbose && options.quiet) throw UsageError("-v and -q contradict each other");
  if (options.conflict_exit < 0 || options.conflict_exit > 255) {
    throw UsageError("-E takes an exit code from 0 to 255");
  }
  check_lock_settings(options.lock);
  if (!options.cluster.wanted() && !options.cluster.key.empty()) {
    throw UsageError("--key names a cluster lock: it needs --etcd");
  }
}

// nullopt after printing the help.
std::optional<RunOptions> parse(const std::vector<std::string>& args) {
  RunOptions options;
  Flags flags;
  const po::options_description described = describe_options(options, flags);
  flags.positional = parse_arguments(args, described, rest_from_pack);
  if (flags.help) {
    print_help(std::cout, kSynopsis, kSummary, described, kFooter);
    return std::nullopt;
  }
  if (flags.positional.empty()) throw UsageError("no PACK given");
  if (flags.positional.front().empty()) throw UsageError("PACK is empty");
  options.pack = flags.positional.front();
  options.command = command_from({flags.positional.begin() + 1, flags.positional.end()},
                                 flags.shell_text);
  options.mode = flags.shared ? Mode::shared : Mode::exclusive;
  complete_cluster_settings(options.cluster);
  check(options, flags);
  // -w 0 means -n, as in flock(1): no waiter is set up at all.
  if (flags.timeout && flags.timeout->value == std::chrono::nanoseconds::zero()) {
    options.nonblock = true;
  } else if (flags.timeout) {
    options.timeout = flags.timeout->value;
  }
  return options;
}

std::string joined(const std::vector<std::string>& words) {
  std::string text;
  for (const std::string& word : words) text += (text.empty() ? "" : " ") + word;
  return text;
}

// ", held exclusive by 1234 (sleep 100) on build1, held for 3s, heartbeat
// 1s ago", or "" when no holder is visible (it may have just gone).
std::string holder_clause(const RunOptions& options) {
  std::error_code ec;
  const PackView view = view_pack(options.pack, options.lock.timing().stale_after, ec);
  if (ec || view.holders.empty()) return "";
  return ", held " + describe_holders(view) + describe_owner(view);
}

// The library's events as -v lines, each kind once: a heartbeat that keeps
// failing would otherwise repeat itself every beat. `hijacked` is left out:
// the loss of the lock is an error line of its own (see LostLockGuard).
class VerboseLog final {
 public:
  explicit VerboseLog(std::filesystem::path pack) : pack_(std::move(pack)) {}

  void operator()(const LogEvent& event) {
    if (event.kind == LogEventKind::hijacked) return;
    {
      const std::lock_guard lock(mutex_);
      if (!said_.insert(event.kind).second) return;
    }
    std::string line = pack_.string() + ": " + event.message;
    if (event.error) line += ": " + event.error.message();
    print_note(line);
  }

 private:
  std::filesystem::path pack_;
  std::mutex mutex_;
  std::set<LogEventKind> said_;
};

// What the waiting looks like: a live line on a terminal, one plain line
// with -v elsewhere, nothing with -q.
class WaitReport final {
 public:
  explicit WaitReport(const RunOptions& options)
      : options_(options), live_(!options.quiet && stderr_is_terminal()) {}

  bool live() const noexcept { return live_; }

  void update(Clock::duration waited) {
    // Who holds the lock is read from the kernel's table only to be shown.
    if (!live_ && (!options_.verbose || announced_)) return;
    const std::string what = options_.pack.string() + ": waiting";
    const std::string why =
        (options_.mode == Mode::exclusive ? " for an exclusive lock" : " for a shared lock") +
        holder_clause(options_);
    if (live_) {
      line_.show(program_name() + ": " + what + " " + format_duration(waited) + why);
    } else if (options_.verbose && !announced_) {
      print_note(what + why);
    }
    announced_ = true;
  }

  void end() { line_.erase(); }

 private:
  const RunOptions& options_;
  bool live_;
  bool announced_ = false;
  StatusLine line_;
};

struct WaitOutcome {
  PackLockHold hold;
  std::error_code ec;
  int stop_signal = 0;  // the signal that ended the wait, if one did
};

// Waits through the library's asynchronous acquire; a stop signal cancels
// it, any other signal (SIGCHLD, SIGUSR1, ...) is let pass. One use.
class LockWait final {
 public:
  LockWait(const PackLock& lock, const RunOptions& options, SignalCatcher& signals)
      : lock_(lock), options_(options), signals_(signals), report_(options) {}

  WaitOutcome run() {
    auto handler = asio::bind_cancellation_slot(
        cancel_.slot(),
        [this](std::error_code ec, PackLockHold hold) { acquired(ec, std::move(hold)); });
    if (options_.timeout) {
      lock_.async_acquire(io_.get_executor(), options_.mode,
                          std::chrono::duration_cast<Clock::duration>(*options_.timeout), handler);
    } else {
      lock_.async_acquire(io_.get_executor(), options_.mode, handler);
    }
    watch_signals();
    // Posted behind the acquire's first attempt, which registers this
    // process as a waiter: once the report is out, status and probe see it.
    asio::post(io_, [this] { tick(); });
    io_.run();
    report_.end();
    return std::move(outcome_);
  }

 private:
  void acquired(std::error_code ec, PackLockHold hold) {
    finished_ = true;
    outcome_.ec = ec;
    outcome_.hold = std::move(hold);
    signal_events_.cancel();
    ticker_.cancel();
  }

  // A signal or tick whose completion was already queued when the acquire
  // completed must not start another wait: io_.run() would never return.
  void watch_signals() {
    using Stream = asio::posix::stream_descriptor;
    signal_events_.async_wait(Stream::wait_read, [this](std::error_code ec) {
      if (ec || finished_) return;
      for (const auto& caught : signals_.take()) {
        if (is_stop_signal(caught.signo) && outcome_.stop_signal == 0) {
          outcome_.stop_signal = caught.signo;
          cancel_.emit(asio::cancellation_type::terminal);
        }
      }
      if (outcome_.stop_signal == 0) watch_signals();
    });
  }

  void tick() {
    if (finished_) return;
    report_.update(Clock::now() - started_);
    if (!report_.live()) return;
    ticker_.expires_after(std::chrono::seconds(1));
    ticker_.async_wait([this](std::error_code ec) {
      if (!ec) tick();
    });
  }

  const PackLock& lock_;
  const RunOptions& options_;
  SignalCatcher& signals_;
  asio::io_context io_;
  asio::cancellation_signal cancel_;
  asio::posix::stream_descriptor signal_events_{io_, ::dup(signals_.fd())};
  asio::steady_timer ticker_{io_};
  WaitReport report_;
  const Clock::time_point started_ = Clock::now();
  WaitOutcome outcome_;
  bool finished_ = false;
};

std::string signal_name(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(signo);
}

// When the hold is lost (its sidecar was unlinked or replaced: another
// process recovered the lock as stale), the command no longer runs under
// the lock: it is told so with SIGTERM, and an error line says why. The
// heartbeat thread reports the loss while the main thread may be reaping
// the child: the mutex keeps a reaped child's pid, which the kernel may
// give to another process, from being signalled.
class LostLockGuard final {
 public:
  LostLockGuard(std::filesystem::path pack, pid_t child) : pack_(std::move(pack)), child_(child) {}

  void lost(const std::string& why) {
    print_error(pack_.string() + ": " + why + "; sending SIGTERM to the command");
    const std::lock_guard lock(mutex_);
    if (!reaped_) ::kill(child_, SIGTERM);
  }

  // waitpid(WNOHANG) for the child, under the guard.
  pid_t reap(int& status) {
    const std::lock_guard lock(mutex_);
    const pid_t ended = ::waitpid(child_, &status, WNOHANG);
    if (ended == child_ || (ended < 0 && errno == ECHILD)) reaped_ = true;
    return ended;
  }

 private:
  const std::filesystem::path pack_;
  const pid_t child_;
  std::mutex mutex_;
  bool reaped_ = false;
};

// Forwards signals until the child ends; returns its wait status. The
// child's end is watched through a pidfd as well as SIGCHLD: under
// ThreadSanitizer, whose runtime defers signals to its own safe points, a
// SIGCHLD that arrived while this thread slept in poll was seen never to be
// handled, and run waited for ever on a zombie.
int supervise(pid_t child, SignalCatcher& signals, LostLockGuard& guard) {
  const detail::UniqueFd child_end(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  int status = 0;
  for (;;) {
    for (const auto& caught : signals.wait(-1, child_end.get())) {
      // A terminal's signals reach the whole foreground process group: the
      // child has had this one already.
      if (caught.signo != SIGCHLD && !caught.from_kernel) ::kill(child, caught.signo);
    }
    const pid_t ended = guard.reap(status);
    if (ended == child) return status;
    // Cannot happen while packlock catches SIGCHLD; never wait for nothing.
    if (ended < 0 && errno == ECHILD) return status;
  }
}

// A stop signal that came after the wait but before the command started
// means the command never starts.
int pending_stop_signal(SignalCatcher& signals) {
  for (const auto& caught : signals.take()) {
    if (is_stop_signal(caught.signo)) return caught.signo;
  }
  return 0;
}

int run_locked(const RunOptions& options, PackLockHold& hold, ClusterRunHold* cluster,
               SignalCatcher& signals) {
  if (const int signo = pending_stop_signal(signals)) return kExitSignalBase + signo;
  if (options.verbose) print_note(options.pack.string() + ": running " + joined(options.command));
  std::vector<std::string> env{"PACKLOCK_PACK=" + hold.pack().string(),
                               "PACKLOCK_MODE=" + std::string(to_string(hold.mode()))};
  if (cluster) {
    env.push_back("PACKLOCK_FENCING_TOKEN=" + std::to_string(cluster->fencing_token()));
    env.push_back("PACKLOCK_ETCD_KEY=" + cluster->key());
  }
  const Spawned spawned = spawn_child(options.command, env, signals);
  if (spawned.os_error) {
    print_error(options.pack.string() + ": cannot start " + options.command.front() + ": " +
                spawned.os_error.message());
    return kExitOsError;
  }
  if (spawned.exec_error) {
    print_error(options.pack.string() + ": cannot run " + options.command.front() + ": " +
                spawned.exec_error.message());
    return exit_code_for_exec_error(spawned.exec_error);
  }
  // Shared with the callback, which may still be running on the heartbeat
  // thread when this function returns.
  const auto guard = std::make_shared<LostLockGuard>(options.pack, spawned.pid);
  hold.on_lost([guard] {
    guard->lost("lock lost (the sidecar was removed or replaced, as a stale lock is)");
  });
  if (cluster) {
    cluster->on_lost([guard] {
      guard->lost("cluster lock lost (its etcd lease expired or its key was deleted)");
    });
  }
  const int status = supervise(spawned.pid, signals, *guard);
  if (cluster) {
    if (const std::error_code ec = cluster->release()) {
      print_error(options.pack.string() + ": release of the cluster lock: " + ec.message());
    }
  }
  if (const std::error_code ec = hold.release()) {
    print_error(options.pack.string() + ": release: " + ec.message());
  }
  const int code = exit_code_of(status);
  if (options.verbose) {
    print_note(options.pack.string() + ": released; " + options.command.front() +
               (WIFSIGNALED(status) ? " was killed by " + signal_name(WTERMSIG(status))
                                    : " exited with " + std::to_string(code)));
  }
  return code;
}

// Ends packlock at once with the command's exit code, once the lock is
// released. Tearing down the PackLock would join the heartbeat thread and
// close descriptors the kernel closes anyway, a tenth of the wall time of a
// short `packlock run` (scripts/bench.sh, run_true_wall).
[[noreturn]] void exit_now(int code) {
  std::cout.flush();
  std::cerr.flush();
  std::_Exit(code);
}

std::string user_name(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::array<char, 1024> buffer;
  const std::string number = "uid " + std::to_string(uid);
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || !found) return number;
  return number + " (" + found->pw_name + ")";
}

// SECURITY in packlock-run(1): in a directory every user may write, the
// sidecar of another user means that user, or any, can hold or replace
// the lock. Only said with -v: such packs may be meant to be shared.
void warn_if_open_to_all(const PackLock& lock, const RunOptions& options) {
  struct stat dir {}, sidecar {};
  if (::stat(lock.pack().c_str(), &dir) != 0 || !(dir.st_mode & S_IWOTH)) return;
  if (::lstat(lock.sidecar().c_str(), &sidecar) != 0 || sidecar.st_uid == ::geteuid()) return;
  print_note(options.pack.string() + ": warning: the sidecar belongs to " +
             user_name(sidecar.st_uid) + " and every user may write the pack directory" +
             ((dir.st_mode & S_ISVTX) ? "" : " (not sticky)") +
             ": anyone can hold this lock, or replace it; see SECURITY in packlock-run(1)");
}

int report_conflict(const RunOptions& options, const std::error_code& ec,
                    const std::string& holders) {
  if (!options.quiet) {
    const std::string what = ec == errc::timeout ? "still locked after " +
                                                       format_duration(*options.timeout)
                                                 : "locked";
    print_note(options.pack.string() + ": " + what + holders);
  }
  return options.conflict_exit;
}

std::string cluster_name(const RunOptions& options, const PackLockHold& hold) {
  return options.cluster.key.empty() ? hold.pack().string() : options.cluster.key;
}

// Ends a wait for the cluster lock on SIGINT, SIGTERM, SIGHUP or SIGQUIT,
// as the pack's wait ends (SIGNALS in packlock-run(1)): a thread watches
// the catcher while this one waits for etcd.
class ClusterWaitStopper final {
 public:
  ClusterWaitStopper(SignalCatcher& signals, Context& context)
      : signals_(signals), context_(context) {
    if (::pipe2(done_, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe2");
    thread_ = std::thread([this] { watch(); });
  }
  ~ClusterWaitStopper() { finish(); }
  ClusterWaitStopper(const ClusterWaitStopper&) = delete;
  ClusterWaitStopper& operator=(const ClusterWaitStopper&) = delete;

  // Stops watching; the signal that ended the wait, or 0.
  int finish() {
    if (thread_.joinable()) {
      const char done = 0;
      [[maybe_unused]] const auto written = ::write(done_[1], &done, 1);
      thread_.join();
      ::close(done_[0]);
      ::close(done_[1]);
    }
    return stop_signal_;
  }

 private:
  void watch() {
    for (;;) {
      pollfd fds[2] = {{signals_.fd(), POLLIN, 0}, {done_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;  // EINTR
      if (fds[1].revents != 0) return;
      for (const auto& caught : signals_.take()) {
        if (is_stop_signal(caught.signo) && stop_signal_ == 0) {
          stop_signal_ = caught.signo;
          context_.cancel();
        }
      }
    }
  }

  SignalCatcher& signals_;
  Context& context_;
  int done_[2] = {-1, -1};
  int stop_signal_ = 0;  // the thread's until joined
  std::thread thread_;
};

// The cluster lock, once the pack's is held: what is left of -w, and the
// pack's canonical path as the name unless --key gives one. `stop_signal`
// is the signal that ended the wait, if one did.
std::unique_ptr<ClusterRunHold> lock_cluster(const RunOptions& options, const PackLockHold& hold,
                                             Clock::time_point asked, SignalCatcher& signals,
                                             int& stop_signal, std::error_code& ec) {
  Context context;
  if (options.timeout) {
    context.with_timeout(std::max(*options.timeout - (Clock::now() - asked), Clock::duration::zero()));
  }
  ClusterWaitStopper stopper(signals, context);
  auto cluster = take_cluster_lock(options.cluster, cluster_name(options, hold), options.mode,
                                   !options.nonblock, context, options.lock,
                                   joined(options.command), ec);
  stop_signal = stopper.finish();
  return cluster;
}

int lock_and_run(const RunOptions& options, SignalCatcher& signals) {
  std::error_code ec;
  Logger logger;
  if (options.verbose) {
    logger = [log = std::make_shared<VerboseLog>(options.pack)](const LogEvent& event) {
      (*log)(event);
    };
  }
  const PackLock lock = open_pack_lock(options.pack, options.lock, ec, joined(options.command),
                                       std::move(logger));
  if (ec) {
    print_error(options.pack.string() + ": cannot open the lock: " + cause_of(ec));
    return exit_code_for(ec);
  }
  if (options.verbose) warn_if_open_to_all(lock, options);
  const auto asked = Clock::now();
  PackLockHold hold = lock.try_acquire(options.mode, ec);
  if (ec == errc::busy && !options.nonblock) {
    WaitOutcome outcome = LockWait(lock, options, signals).run();
    if (outcome.stop_signal != 0) {
      outcome.hold.release();
      if (options.verbose) {
        print_note(options.pack.string() + ": " + signal_name(outcome.stop_signal) +
                   " while waiting; the command was not run");
      }
      return kExitSignalBase + outcome.stop_signal;
    }
    hold = std::move(outcome.hold);
    ec = outcome.ec;
  }
  if (ec == errc::busy || ec == errc::timeout) {
    return report_conflict(options, ec, holder_clause(options));
  }
  if (ec) {
    print_error(options.pack.string() + ": cannot lock: " + cause_of(ec));
    return exit_code_for(ec);
  }
  if (options.verbose) {
    print_note(options.pack.string() + ": locked (" + std::string(to_string(options.mode)) +
               ") after " + format_duration(Clock::now() - asked));
  }
  std::unique_ptr<ClusterRunHold> cluster;
  if (options.cluster.wanted()) {
    int stop_signal = 0;
    cluster = lock_cluster(options, hold, asked, signals, stop_signal, ec);
    if (stop_signal != 0) {
      hold.release();
      if (options.verbose) {
        print_note(options.pack.string() + ": " + signal_name(stop_signal) +
                   " while waiting for the cluster lock; the command was not run");
      }
      return kExitSignalBase + stop_signal;
    }
    if (ec == errc::busy || ec == errc::timeout) {
      hold.release();
      return report_conflict(options, ec, " in etcd (the cluster lock " + cluster_name(options, hold) + ")");
    }
    if (ec) {
      print_error(options.pack.string() + ": etcd " + options.cluster.endpoints + ": " + ec.message());
      hold.release();
      return exit_code_for(ec);
    }
    if (options.verbose) {
      print_note(options.pack.string() + ": cluster lock " + cluster->key() + " held, fencing token " +
                 std::to_string(cluster->fencing_token()));
    }
  }
  const int code = run_locked(options, hold, cluster.get(), signals);
  // Also when the command never started: exit_now() runs no destructor.
  if (cluster) cluster->release();
  // Also when the command never started: release blanks the record.
  hold.release();
  exit_now(code);
}

}  // namespace

int run_main(const std::vector<std::string>& args) {
  const std::optional<RunOptions> parsed = parse(args);
  if (!parsed) return kExitOk;
  const RunOptions& options = *parsed;
  try {
    SignalCatcher signals{SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD};
    return lock_and_run(options, signals);
  } catch (const std::system_error& e) {
    print_error(options.pack.string() + ": " + e.what());
    return kExitOsError;
  }
}

}  // namespace packlock::cli
