// What a fork leaves in the child: a mutex a vanished thread held is
// renewed, and its owner told once to abandon what it guarded.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "fork.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;
using detail::ForkSafeMutex;

namespace {

constexpr int kHung = -1;

constexpr int kThrew = 99;

// Runs `body` in a forked child and returns its exit code, or kHung when it
// has not exited within `limit` (a safety limit against a hang, which is
// what these tests look for). The child never returns into the test runner.
int in_child(const std::function<int()>& body, std::chrono::milliseconds limit = 10s) {
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    int code = kThrew;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  if (!eventually([&] { return ::waitpid(child, &status, WNOHANG) == child; }, limit)) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    return kHung;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The child's report: 0 when the flag read true, then false; 1 when it read
// false first; 2 when it read true twice.
int lock_and_read_the_flag_twice(ForkSafeMutex& mutex) {
  std::lock_guard lock(mutex);
  if (!mutex.left_held_by_fork()) return 1;
  return mutex.left_held_by_fork() ? 2 : 0;
}

// Holds `mutex` on a thread parked in read(2) until the Holder goes.
class Holder {
 public:
  explicit Holder(ForkSafeMutex& mutex) {
    if (::pipe(pipe_) != 0) throw std::runtime_error("pipe failed");
    thread_ = std::thread([held = &mutex, this] {
      std::lock_guard lock(*held);
      locked_.open();
      char byte;
      (void)!::read(pipe_[0], &byte, 1);
    });
    if (!locked_.wait()) {
      let_go();
      throw std::runtime_error("the holder never locked");
    }
  }
  ~Holder() { let_go(); }

 private:
  void let_go() {
    if (!thread_.joinable()) return;
    (void)!::write(pipe_[1], "x", 1);
    thread_.join();
    ::close(pipe_[0]);
    ::close(pipe_[1]);
  }

  int pipe_[2];
  Gate locked_;
  std::thread thread_;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(fork_safety)

BOOST_AUTO_TEST_CASE(a_mutex_a_vanished_thread_held_is_renewed_and_reported_once) {
  ForkSafeMutex mutex;
  Holder holder(mutex);
  BOOST_TEST(in_child([&] { return lock_and_read_the_flag_twice(mutex); }) == 0);
}

BOOST_AUTO_TEST_CASE(a_mutex_free_at_the_fork_is_not_reported) {
  ForkSafeMutex mutex;
  { std::lock_guard lock(mutex); }
  BOOST_TEST(in_child([&] {
               std::lock_guard lock(mutex);
               return mutex.left_held_by_fork() ? 1 : 0;
             }) == 0);
}

BOOST_AUTO_TEST_CASE(a_report_nobody_read_survives_the_next_fork) {
  // The child renews (the flag is set), then forks before any owner read
  // the flag: the grandchild, which finds the mutex free, must still hear it.
  ForkSafeMutex mutex;
  Holder holder(mutex);
  BOOST_TEST(in_child(
                 [&] {
                   mutex.lock();
                   mutex.unlock();
                   return in_child([&] { return lock_and_read_the_flag_twice(mutex); }, 5s);
                 },
                 20s) == 0);
}

BOOST_AUTO_TEST_CASE(abandon_leaves_an_empty_object_and_the_old_one_undestroyed) {
  const auto shared = std::make_shared<int>(7);
  std::shared_ptr<int> object = shared;
  detail::abandon(object);
  BOOST_TEST(!object);
  // Neither destroyed nor assigned over: the old copy still counts.
  BOOST_TEST(shared.use_count() == 2);
}

BOOST_AUTO_TEST_SUITE_END()
