#include "support.hpp"

#include "etcd_server.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <cstdlib>
#include <fstream>
#include <random>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "lock_table.hpp"
#include "pack.hpp"

namespace packlock::test {
namespace {


Mode parse_mode(const std::string& text) {
  return text == "shared" ? Mode::shared : Mode::exclusive;
}

int child_hold(const fs::path& pack, Mode mode) {
  std::error_code ec;
  const PackLock lock = PackLock::open(pack, ec);
  PackLockHold hold = lock.acquire(mode, std::nullopt, ec);
  if (ec) return kChildError;
  std::cout << "locked" << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return hold.release() ? kChildError : kChildOk;
}

int child_try(const fs::path& pack, Mode mode) {
  std::error_code ec;
  const PackLock lock = PackLock::open(pack, ec);
  if (ec) return kChildError;
  PackLockHold hold = lock.try_acquire(mode, ec);
  if (ec == errc::busy) return kChildBusy;
  return ec ? kChildError : kChildOk;
}

// A long-lived partner for many rounds of a test: reads commands on stdin
// and answers each with one line.
//   hold    -> acquire exclusive (blocking), "locked"
//   release -> "released"
//   try     -> try_acquire exclusive and release at once: "free" or "busy"
int child_server(const fs::path& pack) {
  std::error_code ec;
  const PackLock lock = PackLock::open(pack, ec);
  if (ec) return kChildError;
  PackLockHold hold;
  std::string command;
  while (std::getline(std::cin, command)) {
    if (command == "hold") {
      hold = lock.acquire(Mode::exclusive, std::nullopt, ec);
      std::cout << (ec ? "error" : "locked") << std::endl;
    } else if (command == "release") {
      std::cout << (hold.release() ? "error" : "released") << std::endl;
    } else if (command == "try") {
      PackLockHold probe = lock.try_acquire(Mode::exclusive, ec);
      std::cout << (ec == errc::busy ? "busy" : ec ? "error" : "free") << std::endl;
    } else {
      return kChildUsage;
    }
  }
  return kChildOk;
}

// Holds the lock NAME of `manager` (roles named_hold LOCK_DIR and
// cluster_named_hold ENDPOINTS PREFIX) through FACE ("acquire": ext_lock's
// handle, "request": Web Locks' callback) until stdin closes; prints
// "locked" once it holds.
int hold_named(const LockManager& manager, const std::string& name, Mode mode,
               const std::string& face) {
  const auto wait_for_eof = [] {
    std::cout << "locked" << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
    }
  };
  std::error_code ec;
  if (face == "request") {
    RequestOptions options;
    options.mode = mode;
    manager.request(name, options, [&](std::optional<Lock>) { wait_for_eof(); }, ec);
    return ec ? kChildError : kChildOk;
  }
  const LockHandle handle = manager.acquire(name, {std::nullopt, mode}, ec);
  if (ec) return kChildError;
  wait_for_eof();
  manager.release(handle, ec);
  return ec ? kChildError : kChildOk;
}

// Churns until killed: acquires the pack exclusively (blocking and
// asynchronous waits in turn), logs "B pid" on entering and "E pid" on
// leaving the critical section (O_APPEND: each line one atomic write),
// holds for a random moment, releases.
int child_churn(const fs::path& pack, const fs::path& log) {
  std::error_code ec;
  const PackLock lock = PackLock::open(pack, ec);
  const detail::UniqueFd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (ec || !out) return kChildError;
  const std::string entered = "B " + std::to_string(::getpid()) + "\n";
  const std::string left = "E " + std::to_string(::getpid()) + "\n";
  std::minstd_rand random(static_cast<unsigned>(::getpid()));
  asio::io_context io;
  std::cout << "started" << std::endl;
  for (unsigned round = 0;; ++round) {
    PackLockHold hold;
    if (round % 2 == 0) {
      hold = lock.acquire(Mode::exclusive, std::nullopt, ec);
    } else {
      auto future = lock.async_acquire(io.get_executor(), Mode::exclusive, asio::use_future);
      io.restart();
      io.run();
      hold = future.get();
    }
    if (ec || ::write(out.get(), entered.data(), entered.size()) < 0) return kChildError;
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 300));
    if (::write(out.get(), left.data(), left.size()) < 0 || hold.release()) return kChildError;
  }
}

// The counter file of the mutual-exclusion test: the same number on two
// lines, written by two separate writes, so that a reader that overlaps a
// writer sees them differ (or the file short).
std::optional<long> read_counter(int fd) {
  char text[64] = {};
  if (::pread(fd, text, sizeof text - 1, 0) < 0) return std::nullopt;
  long first = -1, second = -2;
  if (std::sscanf(text, "%ld\n%ld\n", &first, &second) != 2 || first != second) {
    return std::nullopt;
  }
  return first;
}

bool write_counter(int fd, long value) {
  const std::string line = std::to_string(value) + "\n";
  return ::ftruncate(fd, 0) == 0 &&
         ::pwrite(fd, line.data(), line.size(), 0) == static_cast<ssize_t>(line.size()) &&
         ::pwrite(fd, line.data(), line.size(), static_cast<off_t>(line.size())) ==
             static_cast<ssize_t>(line.size());
}

// ITERATIONS turns on PACK: three in four an exclusive increment of FILE,
// the others a shared read that checks FILE is whole. Prints how many
// increments it made; exits kChildError when a read saw a torn counter.
int child_mixer(const fs::path& pack, const fs::path& file, int iterations) {
  const PackLock lock = PackLock::open(pack);
  const detail::UniqueFd counter(::open(file.c_str(), O_RDWR | O_CLOEXEC));
  std::minstd_rand random(static_cast<unsigned>(::getpid()));
  long increments = 0;
  for (int i = 0; i < iterations; ++i) {
    // A pause between turns, outside the lock: without it a mixer takes the
    // lock back at once on the same time slice, and the mixers pass it among
    // themselves while holders woken in other processes (packlock run) find
    // it taken again and hardly ever get a turn.
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 1000));
    if (random() % 4 == 0) {
      PackLockHold hold = lock.acquire(Mode::shared);
      if (!read_counter(counter.get())) return kChildError;
    } else {
      PackLockHold hold = lock.acquire(Mode::exclusive);
      const auto value = read_counter(counter.get());
      if (!value || !write_counter(counter.get(), *value + 1)) return kChildError;
      ++increments;
    }
  }
  std::cout << increments << std::endl;
  return kChildOk;
}

std::size_t open_descriptor_count() {
  return static_cast<std::size_t>(
      std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{}));
}

// Exit kChildOk when, with the descriptor limit just above what is open,
// every call on PACK (existing) and FRESH (to be created) either works or
// fails with EMFILE, and no descriptor is left behind by any of them.
int child_fd_exhaustion(const fs::path& pack, const fs::path& fresh) {
  asio::io_context io;
  // The context's reactor, made by its first timer, is the application's:
  // made while descriptors are left (Asio leaks one of them when it fails
  // half-way).
  asio::steady_timer{io};
  // So are the idle inotify instances packlock pools for the process's
  // waits: one asynchronous acquisition makes the first.
  PackLock::open(pack).async_acquire(io.get_executor(), Mode::exclusive,
                                     [](std::error_code, PackLockHold) {});
  io.run();
  const std::size_t before = open_descriptor_count();
  rlimit original{};
  ::getrlimit(RLIMIT_NOFILE, &original);
  int failures = 0;
  int exhausted = 0;  // calls that met the limit: the test must reach it
  const auto expect = [&](const std::error_code& ec, const char* call, rlim_t limit) {
    if (!ec) return;
    if (ec == std::errc::too_many_files_open) {
      ++exhausted;
      return;
    }
    std::cerr << call << " with limit " << limit << ": " << ec.message() << " ("
              << ec.category().name() << ' ' << ec.value() << ")\n";
    ++failures;
  };
  for (rlim_t extra = 0; extra <= 8; ++extra) {
    const rlim_t limit = static_cast<rlim_t>(before) + 1 + extra;
    {
      rlimit lowered = original;
      lowered.rlim_cur = limit;
      if (::setrlimit(RLIMIT_NOFILE, &lowered) != 0) return kChildError;
      std::error_code ec;
      const PackLock existing = PackLock::open(pack, ec);
      expect(ec, "open", limit);
      if (!ec) {
        PackLockHold hold = existing.try_acquire(Mode::exclusive, ec);
        expect(ec, "try_acquire", limit);
        hold.release();
        hold = existing.acquire(Mode::shared, 10ms, ec);
        expect(ec, "acquire", limit);
        hold.release();
        existing.async_acquire(io.get_executor(), Mode::exclusive,
                               [&](std::error_code async_ec, PackLockHold) {
                                 expect(async_ec, "async_acquire", limit);
                               });
        io.restart();
        io.run();
      }
      const PackLock created = PackLock::open(fresh / std::to_string(extra), ec);
      expect(ec, "open (creating)", limit);
    }
    ::setrlimit(RLIMIT_NOFILE, &original);
    // Idle descriptors kept for reuse belong to packs that are closed now.
    if (const std::size_t after = open_descriptor_count(); after != before) {
      std::cerr << "limit " << limit << ": " << before << " descriptors open before, " << after
                << " after:";
      for (const auto& fd : fs::directory_iterator("/proc/self/fd")) {
        std::error_code link_ec;
        std::cerr << ' ' << fs::read_symlink(fd.path(), link_ec).string();
      }
      std::cerr << '\n';
      ++failures;
    }
  }
  if (exhausted == 0) std::cerr << "no call met the descriptor limit\n";
  return failures == 0 && exhausted > 0 ? kChildOk : kChildError;
}

// A process's LockOptions from KEY=VALUE arguments: heartbeat=MS,
// stale=MS, policy=safe|mtime, logger=no (silent), name=SIDECAR.
struct AgentSettings {
  LockOptions options;
  Mode mode = Mode::exclusive;
  std::optional<std::chrono::milliseconds> timeout;
  bool logger = true;
};

AgentSettings parse_agent_settings(int argc, char** argv) {
  AgentSettings settings;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    const std::string key = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    const auto ms = [&] { return std::chrono::milliseconds(std::stoll(value)); };
    if (key == "mode") settings.mode = parse_mode(value);
    if (key == "heartbeat") settings.options.heartbeat = ms();
    if (key == "stale") settings.options.stale_after = ms();
    if (key == "policy") settings.options.stale_policy = value == "mtime" ? StalePolicy::mtime : StalePolicy::safe;
    if (key == "timeout") settings.timeout = ms();
    if (key == "logger") settings.logger = value != "no";
    if (key == "name") settings.options.sidecar_name = value;
  }
  return settings;
}

// Lines from the main thread and the heartbeat thread, whole.
void say(const std::string& line) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  std::cout << line << std::endl;
}

// Prints "event KIND MESSAGE" for each log event, unless logger=no.
void report_events(AgentSettings& settings) {
  if (!settings.logger) return;
  settings.options.logger = [](const LogEvent& event) {
    say("event " + std::string(to_string(event.kind)) + " " + event.message);
  };
}

// A holder or acquirer with LockOptions, for the liveness tests. Answers
// each command on stdin with one line:
//   acquire -> "locked INODE", "timeout" or "error MESSAGE" (blocking, timeout=MS)
//   try     -> "locked INODE", "busy" or "error MESSAGE"
//   release -> "released" or "error MESSAGE"
//   lost    -> "lost yes" or "lost no"
// and reports, whenever they come, "event KIND MESSAGE" for each log event
// and "on_lost" when its hold's on-lost callback runs.
int child_agent(const fs::path& pack, int argc, char** argv) {
  AgentSettings settings = parse_agent_settings(argc, argv);
  report_events(settings);
  std::error_code ec;
  const PackLock lock = PackLock::open(pack, settings.options, ec);
  if (ec) {
    say("error " + ec.message());
    return kChildError;
  }
  const auto locked = [&](PackLockHold& hold) {
    if (ec == errc::timeout) return say("timeout");
    if (ec == errc::busy) return say("busy");
    if (ec) return say("error " + ec.message());
    hold.on_lost([] { say("on_lost"); });
    struct stat st {};
    ::stat((pack / settings.options.sidecar_name).c_str(), &st);
    say("locked " + std::to_string(st.st_ino));
  };
  PackLockHold hold;
  std::string command;
  while (std::getline(std::cin, command)) {
    if (command == "acquire") {
      hold = lock.acquire(settings.mode, settings.timeout, ec);
      locked(hold);
    } else if (command == "try") {
      hold = lock.try_acquire(settings.mode, ec);
      locked(hold);
    } else if (command == "release") {
      const std::error_code released = hold.release();
      say(released ? "error " + released.message() : "released");
    } else if (command == "lost") {
      say(hold.lost() ? "lost yes" : "lost no");
    } else {
      return kChildUsage;
    }
  }
  return kChildOk;
}

// One request of the named lock NAME of `manager`: prints "locked INODE"
// (the inode its sidecar path names then) once its callback holds the
// lock, then answers on stdin
//   lost -> "lost yes" or "lost no" (Lock::lost())
// until any other line or EOF, when the callback returns. Then prints how
// the request ended: "result ok", "result hijacked", "result busy" (not
// granted) or "result error MESSAGE".
void named_request(const LockManager& manager, const std::string& name,
                   const AgentSettings& settings, const RequestOptions& options) {
  const fs::path sidecar = manager.lock_dir() / name / settings.options.sidecar_name;
  std::error_code ec;
  manager.request(name, options,
                  [&](std::optional<Lock> lock) {
                    struct stat st {};
                    ::stat(sidecar.c_str(), &st);
                    say("locked " + std::to_string(st.st_ino));
                    std::string command;
                    while (std::getline(std::cin, command) && command == "lost") {
                      say(lock->lost() ? "lost yes" : "lost no");
                    }
                  },
                  ec);
  say(!ec                     ? "result ok"
      : ec == errc::hijacked  ? "result hijacked"
      : ec == errc::busy      ? "result busy"
                              : "result error " + ec.message());
}

// A holder of the named lock NAME of a LockManager of LOCK_DIR with
// LockOptions (KEY=VALUE as for agent), through the Web Locks face: one
// request at once (see named_request), stdin EOF ends it. Reports "event
// KIND MESSAGE" for each log event whenever it comes.
int child_named_agent(const fs::path& lock_dir, const std::string& name, int argc, char** argv) {
  AgentSettings settings = parse_agent_settings(argc, argv);
  report_events(settings);
  RequestOptions options;
  options.mode = settings.mode;
  named_request(LockManager(lock_dir, settings.options), name, settings, options);
  return kChildOk;
}

// Requests of the named lock NAME of a LockManager of LOCK_DIR (KEY=VALUE
// as for agent), one per command on stdin:
//   request -> a plain request (waiting as long as it takes)
//   steal   -> a request with RequestOptions::steal
// each answered as named_request says ("release" ends a granted one), and
// "event KIND MESSAGE" for each log event whenever it comes.
int child_named_requester(const fs::path& lock_dir, const std::string& name, int argc,
                          char** argv) {
  AgentSettings settings = parse_agent_settings(argc, argv);
  report_events(settings);
  const LockManager manager(lock_dir, settings.options);
  std::string command;
  while (std::getline(std::cin, command)) {
    if (command != "request" && command != "steal") return kChildUsage;
    RequestOptions options;
    options.steal = command == "steal";
    named_request(manager, name, settings, options);
  }
  return kChildOk;
}

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

}  // namespace

// Takes and drops exclusive flocks on 60 files in DIR, all then none, until
// killed: a lock table that keeps changing.
int child_lock_table_churn(const fs::path& dir) {
  std::vector<detail::UniqueFd> files;
  for (int i = 0; i < 60; ++i) {
    const fs::path file = dir / ("churn" + std::to_string(i));
    files.emplace_back(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!files.back()) return kChildError;
  }
  std::cout << "started" << std::endl;
  for (;;) {
    for (const auto& file : files) ::flock(file.get(), LOCK_EX);
    for (const auto& file : files) ::flock(file.get(), LOCK_UN);
  }
}

int child_main(int argc, char** argv) {
  const std::string role = argv[0];
  if (role == "hold" && argc == 3) return child_hold(argv[1], parse_mode(argv[2]));
  if (role == "try" && argc == 3) return child_try(argv[1], parse_mode(argv[2]));
  if (role == "server" && argc == 2) return child_server(argv[1]);
  if (role == "churn" && argc == 3) return child_churn(argv[1], argv[2]);
  if (role == "lock_table_churn" && argc == 2) return child_lock_table_churn(argv[1]);
  if (role == "mixer" && argc == 4) return child_mixer(argv[1], argv[2], std::stoi(argv[3]));
  if (role == "fd_exhaustion" && argc == 3) return child_fd_exhaustion(argv[1], argv[2]);
  if (role == "named_hold" && argc == 5) {
    return hold_named(LockManager(argv[1]), argv[2], parse_mode(argv[3]), argv[4]);
  }
  if (role == "cluster_named_hold" && argc == 6) {
    ClusterOptions cluster;
    cluster.endpoints = ClusterOptions::endpoint_list(argv[1]);
    return hold_named(LockManager(cluster, argv[2]), argv[3], parse_mode(argv[4]), argv[5]);
  }
  if (role == "agent" && argc >= 2) return child_agent(argv[1], argc - 2, argv + 2);
  if (role == "named_agent" && argc >= 3) {
    return child_named_agent(argv[1], argv[2], argc - 3, argv + 3);
  }
  if (role == "named_requester" && argc >= 3) {
    return child_named_requester(argv[1], argv[2], argc - 3, argv + 3);
  }
  if (role == "cluster_counter" && argc == 6) {
    return child_cluster_counter(argv[1], argv[2], argv[3], argv[4], std::stoi(argv[5]));
  }
  std::cerr << "unknown child role " << role << '\n';
  return kChildUsage;
}

TempDir::TempDir(const fs::path& base) {
  std::string pattern = (base / "packlock-test-XXXXXX").string();
  check(::mkdtemp(pattern.data()) != nullptr, "mkdtemp");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Process::Process(std::vector<std::string> argv) {
  int in[2], out[2];
  check(::pipe2(in, O_CLOEXEC) == 0 && ::pipe2(out, O_CLOEXEC) == 0, "pipe2");
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  check(pid_ >= 0, "fork");
  if (pid_ == 0) {
    // A test that dies must not leave holders behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  to_child_ = in[1];
  from_child_ = out[0];
}

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      to_child_(std::exchange(other.to_child_, -1)),
      from_child_(std::exchange(other.from_child_, -1)),
      buffered_(std::move(other.buffered_)),
      passed_over_(std::move(other.passed_over_)),
      status_(other.status_) {}

Process::~Process() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (to_child_ >= 0) ::close(to_child_);
  if (from_child_ >= 0) ::close(from_child_);
}

Process Process::child(std::vector<std::string> args) {
  args.insert(args.begin(), {self_exe(), "--child"});
  return Process(std::move(args));
}

Process Process::flock_holder(const fs::path& file, std::vector<std::string> options) {
  std::vector<std::string> argv{"flock"};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.insert(argv.end(), {file.string(), "-c", "echo locked; cat >/dev/null"});
  return Process(std::move(argv));
}

std::optional<std::string> Process::read_line(std::chrono::milliseconds limit) {
  if (!passed_over_.empty()) {
    std::string line = passed_over_.front();
    passed_over_.erase(passed_over_.begin());
    return line;
  }
  return read_new_line(limit);
}

std::optional<std::string> Process::wait_for(const std::string& prefix,
                                             std::chrono::milliseconds limit) {
  const auto starts = [&](const std::string& line) { return line.rfind(prefix, 0) == 0; };
  if (const auto it = std::find_if(passed_over_.begin(), passed_over_.end(), starts);
      it != passed_over_.end()) {
    std::string line = *it;
    passed_over_.erase(it);
    return line;
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return std::nullopt;
    auto line = read_new_line(left);
    if (!line) return std::nullopt;
    if (starts(*line)) return line;
    passed_over_.push_back(std::move(*line));
  }
}

std::optional<std::string> Process::read_new_line(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (const auto nl = buffered_.find('\n'); nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return std::nullopt;
    pollfd pfd{from_child_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[256];
    const ssize_t n = ::read(from_child_, chunk, sizeof chunk);
    if (n <= 0) return std::nullopt;
    buffered_.append(chunk, static_cast<std::size_t>(n));
  }
}

void Process::expect_line(const std::string& line) {
  const auto got = read_line();
  BOOST_REQUIRE_MESSAGE(got && *got == line,
                        "expected \"" << line << "\" from pid " << pid_ << ", got "
                                      << (got ? "\"" + *got + "\"" : std::string("nothing")));
}

void Process::write_line(const std::string& line) {
  const std::string text = line + "\n";
  check(::write(to_child_, text.data(), text.size()) == static_cast<ssize_t>(text.size()),
        "write to child");
}

void Process::close_stdin() {
  if (to_child_ >= 0) ::close(std::exchange(to_child_, -1));
}

void Process::kill(int signal) { ::kill(pid_, signal); }

void Process::stop() {
  ::kill(pid_, SIGSTOP);
  int status = 0;
  check(::waitpid(pid_, &status, WUNTRACED) == pid_, "waitpid");
  if (!WIFSTOPPED(status)) status_ = status;
  BOOST_REQUIRE_MESSAGE(WIFSTOPPED(status), "pid " << pid_ << " ended instead of stopping");
}

int Process::wait(std::chrono::milliseconds limit) {
  if (status_) return *status_;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      BOOST_ERROR("pid " << pid_ << " did not exit within " << limit.count() << " ms");
      break;
    }
    std::this_thread::sleep_for(1ms);
  }
  status_ = status;
  return status;
}

int Process::exit_code(std::chrono::milliseconds limit) {
  const int status = wait(limit);
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status), "pid " << pid_ << " did not exit normally");
  return WEXITSTATUS(status);
}

int run(const std::vector<std::string>& argv) {
  Process process(argv);
  process.close_stdin();
  const int status = process.wait(30s);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int flock_nonblocking(const fs::path& file, const std::string& mode_option) {
  return run({"flock", mode_option, "-n", file.string(), "true"});
}

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

std::vector<std::string> with_stderr_to(const fs::path& file, std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"sh", "-c", "f=$1; shift; exec \"$@\" 2>\"$f\"", "sh", file.string()});
  return argv;
}

int thread_count() {
  int count = 0;
  for ([[maybe_unused]] const auto& task : fs::directory_iterator("/proc/self/task")) ++count;
  return count;
}

int threads_named(const char* name) {
  int count = 0;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/self/task", ec)) {
    count += read_file(task.path() / "comm") == std::string(name) + "\n";
  }
  return count;
}

ino_t sidecar_inode(const fs::path& pack, const std::string& name) {
  struct stat st {};
  BOOST_REQUIRE(::lstat((pack / name).c_str(), &st) == 0);
  return st.st_ino;
}

ino_t inode_in(const std::string& locked_line) {
  return static_cast<ino_t>(std::stoull(locked_line.substr(locked_line.find(' ') + 1)));
}

void set_mtime(const fs::path& file, std::chrono::seconds offset) {
  timespec times[2]{};
  times[0].tv_nsec = UTIME_OMIT;
  ::clock_gettime(CLOCK_REALTIME, &times[1]);
  times[1].tv_sec += offset.count();
  BOOST_REQUIRE(::utimensat(AT_FDCWD, file.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

std::vector<std::string> child_as_nobody(const TempDir& dir, std::vector<std::string> args) {
  const fs::path bin = dir / "bin-for-nobody";
  if (!fs::exists(bin)) {
    Dl_info library{};
    BOOST_REQUIRE(::dladdr(reinterpret_cast<void*>(&packlock::category), &library) != 0);
    fs::create_directory(bin);
    fs::copy_file(self_exe(), bin / "packlock_tests");
    fs::copy_file(fs::canonical(library.dli_fname), bin / fs::path(library.dli_fname).filename());
    fs::permissions(bin, fs::perms(0755));
  }
  std::vector<std::string> argv{"env",           "LD_LIBRARY_PATH=" + bin.string(),
                                "setpriv",       "--reuid=65534",
                                "--regid=65534", "--clear-groups",
                                (bin / "packlock_tests").string(), "--child"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return condition();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::shared_ptr<detail::PackQueue> queue_of(const PackLock& lock) {
  struct stat st {};
  BOOST_REQUIRE(::stat(lock.pack().c_str(), &st) == 0);
  const std::string key = detail::Pack::table_key(st.st_dev, st.st_ino, ".grex-lock");
  return detail::LockTable::instance().queue_for(key);
}

std::size_t waiting_count(const PackLock& lock) { return queue_of(lock)->waiting(); }

bool waiting_here(const fs::path& pack) {
  std::error_code ec;
  for (const LockParty& party : observe(pack, ec).waiters) {
    if (party.pid == ::getpid()) return true;
  }
  return false;
}

int open_fds_to(const std::string& target) {
  int count = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc/self/fd", ec)) {
    std::error_code link_ec;
    const fs::path link = fs::read_symlink(entry.path(), link_ec);
    if (!link_ec && link.string() == target) ++count;
  }
  return count;
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const fs::path& file, const std::string& content) {
  std::ofstream(file, std::ios::binary) << content;
}

}  // namespace packlock::test
