#pragma once
// Helpers for the tests: a temporary directory per test, and real second
// processes (this binary re-run with --child, or flock(1)) that report
// readiness through a pipe, never by sleeping.

#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <packlock/packlock.hpp>

namespace packlock::detail {
class PackQueue;
}  // namespace packlock::detail

namespace packlock::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Exit codes of --child roles.
inline constexpr int kChildOk = 0;
inline constexpr int kChildBusy = 75;
inline constexpr int kChildError = 71;
inline constexpr int kChildUsage = 64;

// Roles, run as `packlock_tests --child ROLE ARGS...`:
//   hold PACK MODE   acquire (blocking), print "locked", wait for stdin EOF, release
//   try PACK MODE    try_acquire; exit kChildOk if it got the lock, kChildBusy if busy
//   server PACK      answer commands on stdin: hold, release, try (see support.cpp)
//   named_hold LOCK_DIR NAME MODE FACE
//                    hold a named lock (FACE: acquire or request), print
//                    "locked", wait for stdin EOF, release
//   named_agent LOCK_DIR NAME [KEY=VALUE...]  a holder of a named lock with
//                    LockOptions, reporting its loss (see support.cpp)
//   named_requester LOCK_DIR NAME [KEY=VALUE...]  requests (plain or steal)
//                    of a named lock, round after round, driven by commands
//                    on stdin (see support.cpp)
//   agent PACK [KEY=VALUE...]  a holder or acquirer with LockOptions, driven
//                    by commands on stdin and reporting its log events (see
//                    support.cpp)
int child_main(int argc, char** argv);

class TempDir {
 public:
  TempDir() : TempDir(fs::temp_directory_path()) {}
  explicit TempDir(const fs::path& base);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// A test's own pack, opened: the common ground of the fixtures.
struct PackDir {
  TempDir dir;
  fs::path pack = dir / "pack";
  PackLock lock = PackLock::open(pack);
};

// A child process with its stdin and stdout connected to us.
class Process {
 public:
  explicit Process(std::vector<std::string> argv);
  Process(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  // Runs this test binary with --child ARGS.
  static Process child(std::vector<std::string> args);
  // flock(1) holding `file` (with extra options, e.g. "-s") until its stdin closes.
  static Process flock_holder(const fs::path& file, std::vector<std::string> options = {});

  pid_t pid() const { return pid_; }
  // The next line of the child's stdout, or nullopt at EOF or after `limit`
  // (a safety net against hanging, not a measurement).
  std::optional<std::string> read_line(std::chrono::milliseconds limit = 10s);
  void expect_line(const std::string& line);
  // The first line, read before or still to come, that starts with
  // `prefix`; the lines passed over are kept for read_line and later calls.
  std::optional<std::string> wait_for(const std::string& prefix,
                                      std::chrono::milliseconds limit = 10s);
  // Lines read by wait_for but not taken yet.
  const std::vector<std::string>& passed_over() const { return passed_over_; }
  void write_line(const std::string& line);
  void close_stdin();
  void kill(int signal);
  // SIGSTOP; returns once every thread of the child has stopped, so none of
  // its system calls is under way any more.
  void stop();
  // Exit status as from waitpid (use WIFEXITED etc.), waiting at most `limit`.
  int wait(std::chrono::milliseconds limit = 10s);
  // The exit code; fails the test when the child did not exit normally.
  int exit_code(std::chrono::milliseconds limit = 10s);

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::optional<std::string> read_new_line(std::chrono::milliseconds limit);

  std::string buffered_;
  std::vector<std::string> passed_over_;
  std::optional<int> status_;
};

// Runs argv to completion; returns its exit code (-1 if signalled).
int run(const std::vector<std::string>& argv);
// `flock -n FILE true`: 0 when the file was free, 1 when locked.
int flock_nonblocking(const fs::path& file, const std::string& mode_option = "-x");
std::string self_exe();

// argv that runs `argv` with its stderr going to `file`.
std::vector<std::string> with_stderr_to(const fs::path& file, std::vector<std::string> argv);

// Threads of this process (/proc/self/task).
int thread_count();
// The threads of this process named `name` (/proc/self/task/TID/comm).
int threads_named(const char* name);

// The inode the sidecar path of `pack` names now.
ino_t sidecar_inode(const fs::path& pack, const std::string& name = ".grex-lock");
// The inode in an agent's "locked INODE" line.
ino_t inode_in(const std::string& locked_line);
// Sets the mtime of `file` to now + `offset`.
void set_mtime(const fs::path& file, std::chrono::seconds offset);

// argv that runs this test binary --child ARGS as user and group 65534
// (nobody), from a copy (with libpacklock) in a directory that user can
// reach, since the build tree may sit below a directory only root may enter.
std::vector<std::string> child_as_nobody(const TempDir& dir, std::vector<std::string> args);

// Polls `condition` until it holds or `limit` passes; returns its last value.
// For states a test cannot be told about (a thread queued in the lock table).
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 10s);

// Runs the Asio context `io` until `done` holds; fails the test when it
// does not within 20 s (a safety limit, not a measurement).
template <typename Context>
void run_until(Context& io, const std::function<bool()>& done) {
  const auto limit = std::chrono::steady_clock::now() + 20s;
  while (!done() && std::chrono::steady_clock::now() < limit) {
    io.restart();
    io.run_for(5ms);
  }
  if (!done()) throw std::runtime_error("run_until: the condition never held");
}

// A one-shot event between threads: readiness, never sleeping.
class Gate {
 public:
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  // False after 20 s (a safety limit against hanging).
  bool wait() {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, 20s, [this] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

// What an asynchronous operation completed with, for the tests of
// completion handlers: how often it was called, the error and the value.
template <typename Value>
struct Outcome {
  int calls = 0;
  std::error_code ec;
  Value value{};
};

// A handler that records into `outcome`.
template <typename Value>
auto record(Outcome<Value>& outcome) {
  return [&outcome](std::error_code ec, Value value) {
    ++outcome.calls;
    outcome.ec = ec;
    outcome.value = std::move(value);
  };
}

// The in-process queue of the pack of `lock`.
std::shared_ptr<detail::PackQueue> queue_of(const PackLock& lock);
// How many waiters this process has queued for the pack of `lock`.
std::size_t waiting_count(const PackLock& lock);

// True once a thread of this process waits for `pack` in flock(2): the
// kernel lists the request in /proc/locks.
bool waiting_here(const fs::path& pack);

// How many of this process's descriptors are links to exactly `target`.
int open_fds_to(const std::string& target);

std::string read_file(const fs::path& file);
void write_file(const fs::path& file, const std::string& content);

}  // namespace packlock::test
