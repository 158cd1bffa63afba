// LockManager's Web Locks face: request() with its options (mode,
// if_available, steal, timeout, cancellation), the synchronous and the
// Asio form with awaitable callbacks, and query().

#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <list>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "proc_locks.hpp"
#include "stale.hpp"
#include "contention.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct WebLocksFixture {
  TempDir dir;
  fs::path lock_dir = dir / "locks";
  LockManager manager{lock_dir};
  asio::io_context io;

  fs::path sidecar(const std::string& name) const { return lock_dir / name / ".grex-lock"; }
  Process holder(const std::string& name, const std::string& mode = "exclusive",
                 const std::string& face = "request") const {
    Process child = Process::child({"named_hold", lock_dir.string(), name, mode, face});
    child.expect_line("locked");
    return child;
  }
  // An async request for "x" whose awaitable, once granted, waits for its
  // gate to be cancelled, then completes with 42.
  struct GatedRequest {
    explicit GatedRequest(asio::io_context& io) : gate(io, std::chrono::hours(1)) {}
    asio::steady_timer gate;
    bool suspended = false;  // the awaitable waits at its gate
    bool lost = false;       // lock->lost() once through the gate
    bool completed = false;
    int value = 0;
    std::error_code ec;
    std::exception_ptr thrown;
  };
  void start(GatedRequest& request) {
    manager.async_request(io.get_executor(), "x", {},
        [&request](std::optional<Lock> lock) -> asio::awaitable<int> {
          request.suspended = true;
          std::error_code ec;
          co_await request.gate.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          request.lost = !lock || lock->lost();
          co_return 42;
        },
        [&request](std::error_code ec, std::exception_ptr thrown, int v) {
          request.ec = ec;
          request.thrown = thrown;
          request.value = v;
          request.completed = true;
        });
    run_until(io, [&] { return request.suspended; });
  }

  // How many requests of this process wait in the lock table for `name`.
  std::size_t queued(const std::string& name) const {
    return waiting_count(PackLock::open(lock_dir / name));
  }
};

// Waiting requests give up after 20 s, so that a failing test ends rather
// than hangs on a thread that waits for ever.
RequestOptions with_mode(Mode mode) {
  RequestOptions options;
  options.mode = mode;
  options.timeout = 20s;
  return options;
}
const RequestOptions kWaiting = with_mode(Mode::exclusive);

// request() for test threads: an error is logged, never thrown (an
// exception leaving a thread would end the whole test binary).
template <typename Log, typename Callback>
void request_in_thread(const LockManager& manager, const std::string& name,
                       const RequestOptions& options, Callback callback, Log& log) {
  std::error_code ec;
  manager.request(name, options, callback, ec);
  if (ec) log.add("error " + ec.message());
}

// Counts arrivals from any thread; wait_for(n) returns once n arrived.
class Tally {
 public:
  void arrive() {
    std::lock_guard lock(mutex_);
    ++count_;
    cv_.notify_all();
  }
  // False after 20 s (a safety limit against hanging).
  bool wait_for(int n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, 20s, [&] { return count_ >= n; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_ = 0;
};

// Events in the order they happened, from any thread.
class Log {
 public:
  void add(const std::string& event) {
    std::lock_guard lock(mutex_);
    events_.push_back(event);
  }
  std::vector<std::string> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t position(const std::string& event) {
    const auto all = events();
    return static_cast<std::size_t>(std::find(all.begin(), all.end(), event) - all.begin());
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> events_;
};

// Runs an io_context on a thread of its own. finish() lets the pending work
// drain; a test that fails before that stops the context instead.
class IoThread {
 public:
  explicit IoThread(asio::io_context& io)
      : io_(io), work_(asio::make_work_guard(io)), thread_([&io] { io.run(); }) {}
  ~IoThread() {
    if (thread_.joinable()) io_.stop();
  }
  void finish() {
    work_.reset();
    thread_.join();
  }

 private:
  asio::io_context& io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::jthread thread_;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(web_locks)

BOOST_FIXTURE_TEST_CASE(request_holds_the_lock_while_the_callback_runs_and_returns_its_value,
                        WebLocksFixture) {
  int seen_by_flock = -1;
  const int result = manager.request("db/main", {}, [&](std::optional<Lock> lock) {
    BOOST_REQUIRE(lock);
    BOOST_TEST(lock->name() == "db/main");
    BOOST_TEST((lock->mode() == Mode::exclusive));
    BOOST_TEST(!lock->lost());
    seen_by_flock = flock_nonblocking(sidecar("db/main"));
    return 42;
  });
  BOOST_TEST(result == 42);
  BOOST_TEST(seen_by_flock == 1);
  BOOST_TEST(flock_nonblocking(sidecar("db/main")) == 0);
  // The short form: exclusive, waiting.
  const std::string name = manager.request("x", [](std::optional<Lock> lock) {
    return lock && lock->mode() == Mode::exclusive ? lock->name() : std::string();
  });
  BOOST_TEST(name == "x");
}

BOOST_FIXTURE_TEST_CASE(a_shared_request_excludes_exclusive_holders_only, WebLocksFixture) {
  manager.request("x", with_mode(Mode::shared), [&](std::optional<Lock> lock) {
    BOOST_REQUIRE(lock);
    BOOST_TEST((lock->mode() == Mode::shared));
    BOOST_TEST(flock_nonblocking(sidecar("x"), "-s") == 0);
    BOOST_TEST(flock_nonblocking(sidecar("x"), "-x") == 1);
  });
}

BOOST_FIXTURE_TEST_CASE(a_throwing_callback_still_releases, WebLocksFixture) {
  BOOST_CHECK_THROW(
      manager.request(
          "x", {}, [](std::optional<Lock>) -> int { throw std::logic_error("callback failed"); }),
      std::logic_error);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
  BOOST_TEST(manager.query().held.empty());
  std::error_code ec;
  BOOST_CHECK_THROW(manager.request("x", {}, [](std::optional<Lock>) { throw 7; }, ec),
                    int);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
  // And this thread does not hold it any more: no re-entry.
  BOOST_TEST(manager.request("x", [](std::optional<Lock> lock) { return lock.has_value(); }));
}

BOOST_FIXTURE_TEST_CASE(if_available_while_held_calls_back_without_a_lock, WebLocksFixture) {
  RequestOptions if_available;
  if_available.if_available = true;
  const auto has_lock = [](std::optional<Lock> lock) { return lock.has_value(); };
  {
    Process other = holder("x");
    std::error_code ec;
    BOOST_TEST(!manager.request("x", if_available, has_lock, ec));
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(!manager.request("x", if_available, has_lock));
    // Nothing was left queued or pending.
    BOOST_TEST(manager.query().pending.empty());
    other.close_stdin();
    BOOST_TEST(other.exit_code() == kChildOk);
  }
  // Held in this process, by another thread.
  Gate inside, done;
  Log errors;
  std::jthread holding([&] {
    request_in_thread(
        manager, "x", kWaiting,
        [&](std::optional<Lock>) {
          inside.open();
          done.wait();
        },
        errors);
  });
  BOOST_REQUIRE(inside.wait());
  BOOST_TEST(!manager.request("x", if_available, has_lock));
  // And by this thread: "not at once" rather than busy or a deadlock.
  done.open();
  holding.join();
  BOOST_TEST(errors.events().empty());
  const bool nested = manager.request(
      "x", {}, [&](std::optional<Lock>) { return manager.request("x", if_available, has_lock); });
  BOOST_TEST(!nested);
  BOOST_TEST(manager.request("x", if_available, has_lock));
}

BOOST_FIXTURE_TEST_CASE(a_request_for_a_lock_its_thread_holds_is_busy, WebLocksFixture) {
  std::error_code inner;
  manager.request("x", {}, [&](std::optional<Lock>) {
    manager.request("x", {}, [](std::optional<Lock>) { BOOST_ERROR("must not run"); }, inner);
  });
  BOOST_TEST((inner == errc::busy));
  BOOST_TEST((inner == lock_errc::acquire_failed));
}

BOOST_FIXTURE_TEST_CASE(shared_requests_are_granted_together_exclusive_ones_in_fifo_order,
                        WebLocksFixture) {
  const LockHandle blocker = manager.acquire("x");
  Log log;
  Tally shared_inside;
  // Each of the first three shared callbacks waits until all three hold the
  // lock at once: granted together, or the wait times out.
  const auto shared_callback = [&](const std::string& id) {
    return [&, id](std::optional<Lock> lock) {
      log.add("enter " + id);
      if (!lock) log.add("no lock " + id);
      shared_inside.arrive();
      if (id != "s5" && !shared_inside.wait_for(3)) log.add("alone " + id);
      log.add("leave " + id);
    };
  };
  const auto exclusive_callback = [&](const std::string& id) {
    return [&, id](std::optional<Lock> lock) {
      log.add("enter " + id);
      if (!lock || flock_nonblocking(sidecar("x"), "-s") != 1) log.add("not exclusive " + id);
      log.add("leave " + id);
    };
  };
  IoThread runner(io);
  std::vector<std::jthread> threads;
  // s1, s2 blocking; s3 asynchronous; e4 exclusive; s5 shared behind it;
  // e6 exclusive. Each is queued before the next one starts.
  threads.emplace_back([&] {
    request_in_thread(manager, "x", with_mode(Mode::shared), shared_callback("s1"), log);
  });
  BOOST_REQUIRE(eventually([&] { return queued("x") == 1; }));
  threads.emplace_back([&] {
    request_in_thread(manager, "x", with_mode(Mode::shared), shared_callback("s2"), log);
  });
  BOOST_REQUIRE(eventually([&] { return queued("x") == 2; }));
  manager.async_request(io.get_executor(), "x", with_mode(Mode::shared), shared_callback("s3"),
                        [&](std::error_code ec, std::exception_ptr thrown) {
                          log.add(ec || thrown ? "error s3" : "done s3");
                        });
  BOOST_REQUIRE(eventually([&] { return queued("x") == 3; }));
  threads.emplace_back(
      [&] { request_in_thread(manager, "x", kWaiting, exclusive_callback("e4"), log); });
  BOOST_REQUIRE(eventually([&] { return queued("x") == 4; }));
  threads.emplace_back([&] {
    request_in_thread(manager, "x", with_mode(Mode::shared), shared_callback("s5"), log);
  });
  BOOST_REQUIRE(eventually([&] { return queued("x") == 5; }));
  threads.emplace_back(
      [&] { request_in_thread(manager, "x", kWaiting, exclusive_callback("e6"), log); });
  BOOST_REQUIRE(eventually([&] { return queued("x") == 6; }));
  BOOST_TEST(log.events().empty());

  manager.release(blocker);
  for (auto& thread : threads) thread.join();
  BOOST_REQUIRE(eventually([&] { return log.position("done s3") < log.events().size(); }));
  runner.finish();

  const auto events = log.events();
  BOOST_TEST_MESSAGE("events: " << [&] {
    std::string all;
    for (const auto& e : events) all += e + "; ";
    return all;
  }());
  for (const auto& event : events) {
    BOOST_TEST((event.rfind("alone", 0) != 0 && event.rfind("not", 0) != 0 &&
                event.rfind("no lock", 0) != 0 && event.rfind("error", 0) != 0),
               event);
  }
  for (const char* id : {"s1", "s2", "s3"}) {
    BOOST_TEST(log.position(std::string("leave ") + id) < log.position("enter e4"));
  }
  BOOST_TEST(log.position("leave e4") < log.position("enter s5"));
  BOOST_TEST(log.position("leave s5") < log.position("enter e6"));
  BOOST_TEST(events.size() == 13u);
}

BOOST_FIXTURE_TEST_CASE(exclusive_requests_are_served_in_fifo_order, WebLocksFixture) {
  Process other = holder("x");
  Log log;
  std::vector<std::jthread> threads;
  IoThread runner(io);
  for (int id = 0; id < 6; ++id) {
    const auto callback = [&log, id](std::optional<Lock>) { log.add(std::to_string(id)); };
    if (id % 2 == 0) {
      threads.emplace_back(
          [&, callback] { request_in_thread(manager, "x", kWaiting, callback, log); });
    } else {
      manager.async_request(io.get_executor(), "x", {}, callback, [](std::error_code, std::exception_ptr) {});
    }
    // The first waits at the kernel, the others in the table.
    BOOST_REQUIRE(eventually([&] {
      return waiting_here(lock_dir / "x") && queued("x") == static_cast<std::size_t>(id) + 1;
    }));
  }
  other.close_stdin();
  for (auto& thread : threads) thread.join();
  BOOST_REQUIRE(eventually([&] { return log.events().size() == 6; }));
  runner.finish();
  BOOST_TEST(log.events() == (std::vector<std::string>{"0", "1", "2", "3", "4", "5"}),
             boost::test_tools::per_element());
  BOOST_TEST(other.exit_code() == kChildOk);
}

BOOST_FIXTURE_TEST_CASE(a_request_times_out_without_calling_back, WebLocksFixture) {
  Process other = holder("x");
  RequestOptions options;
  options.timeout = 100ms;
  bool called = false;
  std::error_code ec;
  manager.request("x", options, [&](std::optional<Lock>) { called = true; }, ec);
  BOOST_TEST((ec == errc::timeout));
  BOOST_TEST((ec == lock_errc::timeout));
  try {
    manager.request("x", options, [&](std::optional<Lock>) { called = true; });
    BOOST_FAIL("request must throw");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == lock_errc::timeout));
    BOOST_TEST(e.path() == sidecar("x"));
  }
  std::error_code async_ec;
  std::exception_ptr thrown;
  manager.async_request(
      io.get_executor(), "x", options, [&](std::optional<Lock>) { called = true; },
      [&](std::error_code ec, std::exception_ptr e) {
        async_ec = ec;
        thrown = e;
      });
  io.run();
  BOOST_TEST((async_ec == errc::timeout));
  BOOST_TEST(!thrown);
  BOOST_TEST(!called);
  BOOST_TEST(manager.query().pending.empty());
}

BOOST_FIXTURE_TEST_CASE(a_waiting_request_is_cancelled_by_every_cancellation_type,
                        WebLocksFixture) {
  Process other = holder("x");
  for (const auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial,
                          asio::cancellation_type::total}) {
    BOOST_TEST_CONTEXT("type " << static_cast<int>(type)) {
      asio::cancellation_signal signal;
      int completions = 0;
      bool called = false;
      std::error_code error;
      manager.async_request(io.get_executor(), "x", {}, [&](std::optional<Lock>) { called = true; },
          asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, std::exception_ptr) {
            ++completions;
            error = ec;
          }));
      run_until(io, [&] { return waiting_here(lock_dir / "x"); });
      BOOST_TEST(manager.query().pending.size() == 1u);
      signal.emit(type);
      run_until(io, [&] { return completions == 1; });
      io.restart();
      io.run_for(20ms);  // a second completion would show here
      BOOST_TEST(completions == 1);
      BOOST_TEST(!called);
      BOOST_TEST((error == errc::cancelled));
      BOOST_TEST((error == std::errc::operation_canceled));
      BOOST_TEST(manager.query().pending.empty());
      BOOST_TEST(!waiting_here(lock_dir / "x"));
    }
  }
}

BOOST_FIXTURE_TEST_CASE(options_that_exclude_each_other_are_refused, WebLocksFixture) {
  std::vector<RequestOptions> refused(4);
  refused[0].steal = refused[0].if_available = true;
  refused[1].steal = true;
  refused[1].mode = Mode::shared;
  refused[2].if_available = true;
  refused[2].timeout = 1s;
  refused[3].steal = true;
  refused[3].timeout = 1s;
  for (const RequestOptions& options : refused) {
    bool called = false;
    std::error_code ec;
    manager.request("x", options, [&](std::optional<Lock>) { called = true; }, ec);
    BOOST_TEST((ec == errc::conflicting_options));
    BOOST_TEST((ec == std::errc::invalid_argument));
    BOOST_TEST((ec == lock_errc::generic));
    BOOST_CHECK_THROW(manager.request("x", options, [&](std::optional<Lock>) { called = true; }),
                      Error);
    std::error_code async_ec;
    manager.async_request(
        io.get_executor(), "x", options, [&](std::optional<Lock>) { called = true; },
        [&](std::error_code ec, std::exception_ptr) { async_ec = ec; });
    io.restart();
    io.run();
    BOOST_TEST((async_ec == errc::conflicting_options));
    BOOST_TEST(!called);
  }
  BOOST_TEST(!fs::exists(lock_dir));
}

BOOST_FIXTURE_TEST_CASE(async_request_calls_back_on_the_executor_and_completes_with_its_value,
                        WebLocksFixture) {
  bool initiated = false;
  bool ran_inside = false;
  int flock_saw = -1;
  int value = 0;
  std::error_code error = make_error_code(errc::busy);
  std::exception_ptr thrown;
  manager.async_request(io.get_executor(), "x", {},
      [&](std::optional<Lock> lock) {
        ran_inside = !initiated;
        flock_saw = flock_nonblocking(sidecar("x"));
        return lock ? 7 : -1;
      },
      [&](std::error_code ec, std::exception_ptr e, int v) {
        error = ec;
        thrown = e;
        value = v;
      });
  initiated = true;
  io.run();
  BOOST_TEST(!ran_inside);
  BOOST_TEST(!error);
  BOOST_TEST(!thrown);
  BOOST_TEST(value == 7);
  BOOST_TEST(flock_saw == 1);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

BOOST_FIXTURE_TEST_CASE(the_awaitable_form_holds_the_lock_until_the_awaitable_completes,
                        WebLocksFixture) {
  GatedRequest request(io);
  start(request);
  io.restart();
  io.run_for(20ms);
  // The callback returned its awaitable long ago; the lock is still held.
  BOOST_TEST(!request.completed);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 1);
  BOOST_TEST(manager.query().held.size() == 1u);
  request.gate.cancel();
  run_until(io, [&] { return request.completed; });
  BOOST_TEST(!request.ec);
  BOOST_TEST(!request.thrown);
  BOOST_TEST(!request.lost);
  BOOST_TEST(request.value == 42);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
  BOOST_TEST(manager.query().held.empty());
}

BOOST_FIXTURE_TEST_CASE(a_throwing_awaitable_still_releases_and_the_exception_reaches_the_caller,
                        WebLocksFixture) {
  std::string caught;
  int flock_saw = -1;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const auto executor = co_await asio::this_coro::executor;
        try {
          const std::exception_ptr thrown = co_await manager.async_request(executor, "x", {},
              [&](std::optional<Lock>) -> asio::awaitable<void> {
                flock_saw = flock_nonblocking(sidecar("x"));
                throw std::runtime_error("awaitable failed");
                co_return;
              },
              asio::use_awaitable);
          if (thrown) std::rethrow_exception(thrown);
        } catch (const std::runtime_error& e) {
          caught = e.what();
        }
      },
      asio::detached);
  io.run();
  BOOST_TEST(caught == "awaitable failed");
  BOOST_TEST(flock_saw == 1);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
  // A plain callback that throws, through use_future.
  auto future = manager.async_request(
      io.get_executor(), "x", {}, [](std::optional<Lock>) -> int { throw std::out_of_range("no"); },
      asio::use_future);
  io.restart();
  io.run();
  const auto [thrown, value] = future.get();
  BOOST_CHECK_THROW(std::rethrow_exception(thrown), std::out_of_range);
  BOOST_TEST(value == 0);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

BOOST_FIXTURE_TEST_CASE(async_if_available_while_held_calls_back_without_a_lock, WebLocksFixture) {
  Process other = holder("x");
  RequestOptions options;
  options.if_available = true;
  auto future = manager.async_request(
      io.get_executor(), "x", options, [](std::optional<Lock> lock) { return lock.has_value(); },
      asio::use_future);
  io.run();
  BOOST_TEST(std::get<1>(future.get()) == false);
  other.close_stdin();
  BOOST_TEST(other.exit_code() == kChildOk);
  future = manager.async_request(
      io.get_executor(), "x", options, [](std::optional<Lock> lock) { return lock.has_value(); },
      asio::use_future);
  io.restart();
  io.run();
  BOOST_TEST(std::get<1>(future.get()) == true);
}

BOOST_FIXTURE_TEST_CASE(steal_takes_the_lock_from_a_request_in_this_process_at_once,
                        WebLocksFixture) {
  Gate inside, finish;
  std::optional<Lock> victim_lock;
  bool lost_at_the_end = false;
  std::error_code victim_result;
  std::jthread victim([&] {
    const int value = manager.request("x", {},
        [&](std::optional<Lock> lock) {
          victim_lock = lock;
          inside.open();
          finish.wait();
          lost_at_the_end = lock->lost();
          return 5;
        },
        victim_result);
    if (value != 5) victim_result = std::make_error_code(std::errc::bad_message);
  });
  BOOST_REQUIRE(inside.wait());
  BOOST_TEST(!victim_lock->lost());
  RequestOptions steal;
  steal.steal = true;
  int flock_saw = -1;
  std::size_t holders_seen = 0;
  const bool granted = manager.request("x", steal, [&](std::optional<Lock> lock) {
    flock_saw = flock_nonblocking(sidecar("x"));
    holders_seen = manager.query().held.size();
    return lock.has_value() && !lock->lost();
  });
  BOOST_TEST(granted);
  BOOST_TEST(flock_saw == 1);
  BOOST_TEST(holders_seen == 1u);  // the stealer; the victim runs on without the lock
  BOOST_TEST(victim_lock->lost());
  finish.open();
  victim.join();
  BOOST_TEST(lost_at_the_end);
  // The victim's callback ran to its end; then the loss is reported.
  BOOST_TEST((victim_result == errc::hijacked), victim_result.message());
  BOOST_TEST((victim_result == lock_errc::not_held));
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

BOOST_FIXTURE_TEST_CASE(an_awaitable_whose_lock_is_stolen_sees_it_and_its_request_says_so,
                        WebLocksFixture) {
  GatedRequest request(io);
  start(request);
  RequestOptions steal;
  steal.steal = true;
  BOOST_TEST(
      manager.request("x", steal, [](std::optional<Lock> lock) { return lock.has_value(); }));
  request.gate.cancel();
  run_until(io, [&] { return request.completed; });
  BOOST_TEST(request.lost);
  BOOST_TEST((request.ec == errc::hijacked));
  BOOST_TEST(!request.thrown);
  BOOST_TEST(request.value == 42);  // the result is not lost with the lock
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

BOOST_FIXTURE_TEST_CASE(a_lock_error_comes_first_as_an_error_code_not_as_an_exception,
                        WebLocksFixture) {
  Process other = holder("x");
  RequestOptions options;
  options.timeout = 30ms;
  bool called = false;
  auto future = manager.async_request(
      io.get_executor(), "x", options,
      [&](std::optional<Lock>) {
        called = true;
        return 1;
      },
      asio::use_future);
  // The error code is thrown; what remains is the callback's exception and value.
  static_assert(std::is_same_v<decltype(future), std::future<std::tuple<std::exception_ptr, int>>>);
  io.run();
  try {
    future.get();
    BOOST_FAIL("the timeout must reach the caller");
  } catch (const std::system_error& e) {
    BOOST_TEST((e.code() == errc::timeout));
  }
  BOOST_TEST(!called);
}

BOOST_FIXTURE_TEST_CASE(a_callback_that_throws_after_its_lock_was_stolen_reports_both,
                        WebLocksFixture) {
  asio::steady_timer gate(io, std::chrono::hours(1));
  bool suspended = false;
  bool completed = false;
  std::error_code result;
  std::exception_ptr thrown;
  manager.async_request(io.get_executor(), "x", {},
      [&](std::optional<Lock>) -> asio::awaitable<int> {
        suspended = true;
        std::error_code ec;
        co_await gate.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        throw std::length_error("after the steal");
      },
      [&](std::error_code ec, std::exception_ptr e, int) {
        result = ec;
        thrown = e;
        completed = true;
      });
  run_until(io, [&] { return suspended; });
  RequestOptions steal;
  steal.steal = true;
  BOOST_TEST(
      manager.request("x", steal, [](std::optional<Lock> lock) { return lock.has_value(); }));
  gate.cancel();
  run_until(io, [&] { return completed; });
  BOOST_TEST((result == errc::hijacked));
  BOOST_CHECK_THROW(std::rethrow_exception(thrown), std::length_error);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

BOOST_FIXTURE_TEST_CASE(steal_is_granted_ahead_of_queued_requests, WebLocksFixture) {
  const LockManager other_manager(lock_dir);
  const LockHandle handle = other_manager.acquire("x");  // another manager, one process
  Log log;
  std::vector<std::jthread> waiters;
  for (int id = 0; id < 2; ++id) {
    waiters.emplace_back([&, id] {
      request_in_thread(
          manager, "x", kWaiting,
          [&, id](std::optional<Lock>) { log.add("waiter " + std::to_string(id)); }, log);
    });
    BOOST_REQUIRE(eventually([&] { return queued("x") == static_cast<std::size_t>(id) + 1; }));
  }
  RequestOptions steal;
  steal.steal = true;
  auto future = manager.async_request(io.get_executor(), "x", steal,
      [&](std::optional<Lock> lock) {
        log.add("stealer");
        return lock.has_value();
      },
      asio::use_future);
  io.run();
  BOOST_TEST(std::get<1>(future.get()));
  for (auto& waiter : waiters) waiter.join();
  BOOST_TEST(log.events() == (std::vector<std::string>{"stealer", "waiter 0", "waiter 1"}),
             boost::test_tools::per_element());
  std::error_code ec;
  other_manager.release(handle, ec);
  BOOST_TEST((ec == errc::hijacked));
  BOOST_TEST((ec == lock_errc::not_held));
  other_manager.release(handle, ec);
  BOOST_TEST((ec == errc::not_held));
}

BOOST_FIXTURE_TEST_CASE(steal_of_a_lock_nobody_holds_is_a_plain_grant, WebLocksFixture) {
  RequestOptions steal;
  steal.steal = true;
  BOOST_TEST(
      manager.request("x", steal, [](std::optional<Lock> lock) { return lock.has_value(); }));
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

// A holder in another process loses the lock to a steal here: the steal is
// granted at once, and the holder is told through the hijack path. Its
// heartbeat is an hour long, so that only inotify can tell it within the
// read's safety limit: the report comes well within its heartbeat interval.
BOOST_FIXTURE_TEST_CASE(steal_robs_a_holder_in_another_process_which_is_told, WebLocksFixture) {
  Process other = Process::child(
      {"named_agent", lock_dir.string(), "x", "heartbeat=3600000", "stale=7200000"});
  BOOST_REQUIRE(other.wait_for("locked"));
  other.write_line("lost");
  other.expect_line("lost no");
  const ino_t robbed = sidecar_inode(lock_dir / "x");
  RequestOptions steal;
  steal.steal = true;
  int third_saw = -1;
  std::vector<LockParty> holders;
  ino_t held = 0;
  const bool granted = manager.request("x", steal, [&](std::optional<Lock> lock) {
    third_saw = flock_nonblocking(sidecar("x"));
    holders = observe(lock_dir / "x").holders;
    held = sidecar_inode(lock_dir / "x");
    // The robbed holder hears of it while this one holds.
    const auto event = other.wait_for("event hijacked");
    BOOST_TEST(event.has_value());
    return lock.has_value() && !lock->lost();
  });
  BOOST_TEST(granted);
  BOOST_TEST(held != robbed);
  BOOST_TEST(third_saw == 1);
  BOOST_REQUIRE(holders.size() == 1u);  // the path's inode has one holder: this process
  BOOST_TEST(holders[0].pid == ::getpid());
  other.write_line("lost");
  BOOST_TEST(other.wait_for("lost ").value_or("") == "lost yes");
  other.close_stdin();
  BOOST_TEST(other.wait_for("result ").value_or("") == "result hijacked");
  BOOST_TEST(other.exit_code() == kChildOk);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

// A short heartbeat finds the loss at its next beat at the latest.
BOOST_FIXTURE_TEST_CASE(a_robbed_holder_with_a_short_heartbeat_is_told_too, WebLocksFixture) {
  Process other =
      Process::child({"named_agent", lock_dir.string(), "x", "heartbeat=200", "stale=2000"});
  BOOST_REQUIRE(other.wait_for("locked"));
  RequestOptions steal;
  steal.steal = true;
  BOOST_TEST(manager.request("x", steal, [&](std::optional<Lock> lock) {
    BOOST_TEST(other.wait_for("event hijacked").has_value());
    return lock.has_value();
  }));
  other.write_line("lost");
  BOOST_TEST(other.wait_for("lost ").value_or("") == "lost yes");
  other.close_stdin();
  BOOST_TEST(other.wait_for("result ").value_or("") == "result hijacked");
}

// Holders that would not be told are not robbed: the steal fails at once,
// leaves the queue, and the holder keeps the lock.
void check_steal_stays_busy(WebLocksFixture& f) {
  RequestOptions steal;
  steal.steal = true;
  bool called = false;
  std::error_code ec;
  f.manager.request("x", steal, [&](std::optional<Lock>) { called = true; }, ec);
  BOOST_TEST((ec == errc::busy), ec.message());
  BOOST_TEST((ec == lock_errc::acquire_failed));
  BOOST_TEST(!called);
  BOOST_TEST(f.manager.is_locked("x"));
  BOOST_TEST(f.manager.query().pending.empty());
}

BOOST_FIXTURE_TEST_CASE(steal_stays_busy_for_a_flock_holder, WebLocksFixture) {
  fs::create_directories(lock_dir / "x");
  Process other = Process::flock_holder(sidecar("x"));
  other.expect_line("locked");
  const ino_t before = sidecar_inode(lock_dir / "x");
  check_steal_stays_busy(*this);
  BOOST_TEST(sidecar_inode(lock_dir / "x") == before);  // not unlinked
  // It left the queue: a later request is served.
  other.close_stdin();
  BOOST_TEST(other.exit_code() == 0);
  BOOST_TEST(manager.request("x", {}, [](std::optional<Lock> lock) { return lock.has_value(); }));
}

BOOST_FIXTURE_TEST_CASE(steal_stays_busy_for_a_shared_holder_elsewhere, WebLocksFixture) {
  Process other = holder("x", "shared");
  check_steal_stays_busy(*this);
  other.close_stdin();
  BOOST_TEST(other.exit_code() == kChildOk);
}

// Decision: a PackLock hold in this process is not robbed by a steal.
BOOST_FIXTURE_TEST_CASE(steal_stays_busy_for_a_pack_lock_holder_in_this_process,
                        WebLocksFixture) {
  const PackLock lock = PackLock::open(lock_dir / "x");
  PackLockHold hold = lock.acquire();
  check_steal_stays_busy(*this);
  BOOST_TEST(!hold.lost());
  BOOST_TEST(!hold.release());
}

BOOST_FIXTURE_TEST_CASE(query_lists_this_process_exactly, WebLocksFixture) {
  const LockManager second(lock_dir);
  const LockHandle a = manager.acquire("a");
  const LockHandle b = second.acquire("db/b", {std::nullopt, Mode::shared});
  Log errors;
  std::jthread waiter([&] {
    request_in_thread(
        manager, "a", with_mode(Mode::shared), [](std::optional<Lock>) {}, errors);
  });
  BOOST_REQUIRE(eventually([&] { return queued("a") == 1; }));
  const LockManagerSnapshot snapshot = manager.query();
  const std::string me = std::to_string(::getpid());
  BOOST_TEST(manager.client_id().rfind(me + "/", 0) == 0u);
  BOOST_TEST(manager.client_id() != second.client_id());
  BOOST_REQUIRE(snapshot.held.size() == 2u);
  BOOST_TEST(snapshot.held[0].name == "a");
  BOOST_TEST((snapshot.held[0].mode == Mode::exclusive));
  BOOST_TEST(snapshot.held[0].client_id == manager.client_id());
  BOOST_TEST(snapshot.held[0].pid == ::getpid());
  BOOST_TEST(snapshot.held[1].name == "db/b");
  BOOST_TEST((snapshot.held[1].mode == Mode::shared));
  BOOST_TEST(snapshot.held[1].client_id == second.client_id());
  BOOST_REQUIRE(snapshot.pending.size() == 1u);
  BOOST_TEST(snapshot.pending[0].name == "a");
  BOOST_TEST((snapshot.pending[0].mode == Mode::shared));
  BOOST_TEST(snapshot.pending[0].client_id == manager.client_id());
  // A manager of a directory above sees the same requests by its own names.
  const LockManagerSnapshot above = LockManager(dir.path()).query();
  BOOST_TEST(above.held.size() == 2u);
  BOOST_TEST(above.held.at(1).name == "locks/db/b");
  manager.release(a);
  waiter.join();
  BOOST_TEST(errors.events().empty());
  second.release(b);
  BOOST_TEST(manager.query().held.empty());
  BOOST_TEST(manager.query().pending.empty());
}

BOOST_FIXTURE_TEST_CASE(query_shows_a_holder_and_a_waiter_in_another_process_until_killed,
                        WebLocksFixture) {
  Process holding = holder("n");
  Process waiting = Process::child({"named_hold", lock_dir.string(), "n", "shared", "acquire"});
  const auto pending_pids = [&] {
    std::vector<pid_t> pids;
    for (const LockInfo& info : manager.query().pending) pids.push_back(info.pid);
    return pids;
  };
  BOOST_REQUIRE(eventually([&] { return pending_pids() == std::vector<pid_t>{waiting.pid()}; }));
  const LockManagerSnapshot snapshot = manager.query();
  BOOST_REQUIRE(snapshot.held.size() == 1u);
  BOOST_TEST(snapshot.held[0].name == "n");
  BOOST_TEST((snapshot.held[0].mode == Mode::exclusive));
  BOOST_TEST(snapshot.held[0].pid == holding.pid());
  BOOST_TEST(snapshot.held[0].client_id == std::to_string(holding.pid()));
  BOOST_TEST(snapshot.pending[0].name == "n");
  BOOST_TEST((snapshot.pending[0].mode == Mode::shared));
  BOOST_TEST(snapshot.pending[0].client_id == std::to_string(waiting.pid()));

  waiting.kill(SIGKILL);
  waiting.wait();
  const LockManagerSnapshot after = manager.query();
  BOOST_TEST(after.pending.empty());
  BOOST_TEST(after.held.size() == 1u);
  holding.close_stdin();
  BOOST_TEST(holding.exit_code() == kChildOk);
  BOOST_TEST(manager.query().held.empty());
}

BOOST_FIXTURE_TEST_CASE(query_sees_foreign_holders_of_lock_names_only, WebLocksFixture) {
  fs::create_directories(lock_dir / "db" / "main");
  fs::create_directories(lock_dir / "not a name");
  Process foreign = Process::flock_holder(sidecar("db/main"), {"-s"});
  foreign.expect_line("locked");
  Process odd = Process::flock_holder(lock_dir / "not a name" / ".grex-lock");
  odd.expect_line("locked");
  const LockManagerSnapshot snapshot = manager.query();
  BOOST_REQUIRE(snapshot.held.size() == 1u);
  BOOST_TEST(snapshot.held[0].name == "db/main");
  BOOST_TEST((snapshot.held[0].mode == Mode::shared));
  // flock(1) runs the command as its child; the lock is flock's own.
  BOOST_TEST(snapshot.held[0].pid == foreign.pid());
  BOOST_TEST(snapshot.pending.empty());
}

BOOST_FIXTURE_TEST_CASE(query_of_a_missing_lock_directory_is_empty_and_creates_nothing,
                        WebLocksFixture) {
  const LockManagerSnapshot snapshot = manager.query();
  BOOST_TEST(snapshot.held.empty());
  BOOST_TEST(snapshot.pending.empty());
  BOOST_TEST(!fs::exists(lock_dir));
}

BOOST_AUTO_TEST_SUITE_END()
