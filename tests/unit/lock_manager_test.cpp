// LockManager's names and its ext_lock face: acquire / release handles,
// try_acquire, is_locked across processes, async_acquire with completion
// tokens, cancellation and timeouts, and the error codes it reports.

#include <signal.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "lock_name.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct ManagerFixture {
  TempDir dir;
  fs::path lock_dir = dir / "locks";
  LockManager manager{lock_dir};

  fs::path sidecar(const std::string& name) const { return lock_dir / name / ".grex-lock"; }
  // A process holding `name` through `face`, once it says so.
  Process holder(const std::string& name, const std::string& mode = "exclusive",
                 const std::string& face = "acquire") const {
    Process child = Process::child({"named_hold", lock_dir.string(), name, mode, face});
    child.expect_line("locked");
    return child;
  }
};

std::string component(std::size_t length) { return std::string(length, 'c'); }

const std::vector<std::string>& invalid_names() {
  static const std::vector<std::string> names = {
      "",          "..",         "../a",        "a/..",      "a/../b",     ".",
      "./a",       "a/.",        ".hidden",     "a/.hidden", ".grex-lock", "a/.grex-lock.wake",
      "/abs",      "a/",         "a//b",        "/",         "a b",        std::string("a\0b", 3),
      "a\nb",      "caf\xc3\xa9", "a*b",         "a\\b",      "a:b",        component(256),
      component(255) + "/" + component(255) + "/" + component(255) + "/" + component(254) + "/" +
          component(2)};  // 1025 bytes
  return names;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(lock_manager)

BOOST_AUTO_TEST_CASE(the_name_rules) {
  for (const std::string& name : invalid_names()) {
    BOOST_TEST_CONTEXT("name \"" << detail::printable_name(name) << "\"") {
      BOOST_TEST(!detail::is_lock_name(name));
    }
  }
  const std::string longest = component(255) + "/" + component(255) + "/" + component(255) +
                              "/" + component(254) + "/" + component(1);
  BOOST_REQUIRE(longest.size() == detail::kMaxNameLength);
  for (const std::string& name :
       {std::string("a"), std::string("db/main"), std::string("A-Z_0.9"), std::string("a.b"),
        std::string("a..b"), std::string("-x"), component(255), longest}) {
    BOOST_TEST_CONTEXT("name \"" << detail::printable_name(name) << "\"") {
      BOOST_TEST(detail::is_lock_name(name));
    }
  }
  BOOST_TEST(detail::printable_name(std::string("a\0b\n", 4)) == "a\\x00b\\x0a");
}

BOOST_FIXTURE_TEST_CASE(invalid_names_are_refused_by_every_call_before_anything_is_created,
                        ManagerFixture) {
  asio::io_context io;
  for (const std::string& name : invalid_names()) {
    BOOST_TEST_CONTEXT("name \"" << detail::printable_name(name) << "\"") {
      std::error_code ec;
      BOOST_TEST(manager.acquire(name, {}, ec).id == 0u);
      BOOST_TEST((ec == errc::invalid_name));
      BOOST_TEST((ec == lock_errc::invalid_name));
      BOOST_TEST(!manager.try_acquire(name, Mode::exclusive, ec));
      BOOST_TEST((ec == lock_errc::invalid_name));
      BOOST_TEST(!manager.is_locked(name, ec));
      BOOST_TEST((ec == lock_errc::invalid_name));
      bool called = false;
      manager.request(name, {}, [&](std::optional<Lock>) { called = true; }, ec);
      BOOST_TEST((ec == lock_errc::invalid_name));
      BOOST_TEST(!called);
      Outcome<LockHandle> outcome;
      manager.async_acquire(io.get_executor(), name, {}, record(outcome));
      io.restart();
      io.run();
      BOOST_TEST(outcome.calls == 1);
      BOOST_TEST((outcome.ec == lock_errc::invalid_name));
      try {
        manager.acquire(name);
        BOOST_FAIL("acquire must throw");
      } catch (const Error& e) {
        BOOST_TEST((e.code() == lock_errc::invalid_name));
        BOOST_TEST(std::string(e.what()).find(lock_dir.string()) != std::string::npos);
        BOOST_TEST(std::string(e.what()).find("invalid lock name") != std::string::npos);
      }
    }
  }
  BOOST_TEST(!fs::exists(lock_dir));
}

BOOST_FIXTURE_TEST_CASE(the_longest_names_are_locks, ManagerFixture) {
  const std::string longest = component(255) + "/" + component(255) + "/" + component(255) +
                              "/" + component(254) + "/" + component(1);
  for (const std::string& name : {component(255), longest}) {
    const LockHandle handle = manager.acquire(name);
    BOOST_TEST(flock_nonblocking(sidecar(name)) == 1);
    manager.release(handle);
  }
}

BOOST_FIXTURE_TEST_CASE(acquire_locks_the_sidecar_of_the_named_pack, ManagerFixture) {
  const LockHandle build = manager.acquire("build");
  const LockHandle nested = manager.acquire("db/main");
  BOOST_TEST(build.name == "build");
  BOOST_TEST(nested.name == "db/main");
  BOOST_TEST(build.id != nested.id);
  BOOST_TEST(build.id != 0u);
  BOOST_TEST(flock_nonblocking(sidecar("build")) == 1);
  BOOST_TEST(flock_nonblocking(sidecar("db/main")) == 1);
  // "db" is a directory on the way to "db/main", not a lock it holds.
  BOOST_TEST(!manager.is_locked("db"));
  manager.release(build);
  BOOST_TEST(flock_nonblocking(sidecar("build")) == 0);
  BOOST_TEST(flock_nonblocking(sidecar("db/main")) == 1);
  manager.release(nested);
  BOOST_TEST(flock_nonblocking(sidecar("db/main")) == 0);
  BOOST_TEST(fs::is_regular_file(sidecar("build")));  // the sidecar stays
}

// One open pack per name while the manager lives: requests of a name
// after the first open nothing, whatever face makes them; a pack removed
// meanwhile is opened (and created) anew.
BOOST_FIXTURE_TEST_CASE(a_manager_keeps_one_open_pack_per_name, ManagerFixture) {
  manager.release(manager.acquire("x"));
  const fs::path pack = lock_dir / "x";
  const int directories = open_fds_to(pack.string());
  const int sidecars = open_fds_to(sidecar("x").string());
  BOOST_TEST(directories == 1);
  BOOST_TEST(sidecars == 1);  // the idle descriptor, kept for the next request
  for (int round = 0; round < 20; ++round) {
    manager.release(manager.acquire("x"));
    manager.request("x", [](std::optional<Lock>) {});
    if (auto handle = manager.try_acquire("x")) manager.release(*handle);
  }
  BOOST_TEST(open_fds_to(pack.string()) == directories);
  BOOST_TEST(open_fds_to(sidecar("x").string()) == sidecars);
  fs::remove_all(pack);
  manager.release(manager.acquire("x"));
  BOOST_TEST(fs::is_regular_file(sidecar("x")));
  BOOST_TEST(open_fds_to(pack.string()) == 1);
}

BOOST_FIXTURE_TEST_CASE(handle_ids_are_never_reused, ManagerFixture) {
  std::set<std::uint64_t> ids;
  for (int round = 0; round < 50; ++round) {
    const LockHandle handle = manager.acquire("x");
    BOOST_TEST(ids.insert(handle.id).second);
    manager.release(handle);
  }
}

BOOST_FIXTURE_TEST_CASE(releasing_what_is_not_held_is_not_held, ManagerFixture) {
  const LockHandle handle = manager.acquire("x");
  std::error_code ec;
  manager.release(handle, ec);
  BOOST_TEST(!ec, ec.message());
  manager.release(handle, ec);
  BOOST_TEST((ec == errc::not_held));
  BOOST_TEST((ec == lock_errc::not_held));
  try {
    manager.release(handle);
    BOOST_FAIL("a second release must throw");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == lock_errc::not_held));
    BOOST_TEST(std::string(e.what()) == "lock " + sidecar("x").string() + ": lock is not held");
  }
  // A handle this manager never gave, or whose name is not its own.
  const LockHandle held = manager.acquire("x");
  manager.release(LockHandle{held.id + 1000, "x"}, ec);
  BOOST_TEST((ec == lock_errc::not_held));
  manager.release(LockHandle{held.id, "y"}, ec);
  BOOST_TEST((ec == lock_errc::not_held));
  const LockManager other(lock_dir);
  other.release(held, ec);
  BOOST_TEST((ec == lock_errc::not_held));
  // None of them released it.
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 1);
  manager.release(held, ec);
  BOOST_TEST(!ec, ec.message());
}

BOOST_FIXTURE_TEST_CASE(try_acquire_gives_nothing_while_the_lock_is_held, ManagerFixture) {
  {
    Process other = holder("x");
    std::error_code ec;
    BOOST_TEST(!manager.try_acquire("x", Mode::exclusive, ec));
    BOOST_TEST(!ec, ec.message());
    BOOST_TEST(!manager.try_acquire("x"));
    other.close_stdin();
    BOOST_TEST(other.exit_code() == kChildOk);
  }
  const std::optional<LockHandle> handle = manager.try_acquire("x");
  BOOST_REQUIRE(handle);
  BOOST_TEST(handle->name == "x");
  // Another manager of the same directory, in this process: excluded too.
  const LockManager other(dir.path() / "." / "locks");
  BOOST_TEST(!other.try_acquire("x"));
  manager.release(*handle);
  const std::optional<LockHandle> theirs = other.try_acquire("x");
  BOOST_TEST(theirs.has_value());
}

BOOST_FIXTURE_TEST_CASE(shared_handles_coexist_and_exclude_exclusive_ones, ManagerFixture) {
  const LockHandle first = manager.acquire("x", {std::nullopt, Mode::shared});
  // Another thread: the holding thread asking again would be re-entry.
  std::optional<LockHandle> second;
  std::jthread([&] { second = manager.try_acquire("x", Mode::shared); }).join();
  BOOST_REQUIRE(second);
  BOOST_TEST(!manager.try_acquire("x", Mode::exclusive));
  BOOST_TEST(flock_nonblocking(sidecar("x"), "-s") == 0);
  BOOST_TEST(flock_nonblocking(sidecar("x"), "-x") == 1);
  manager.release(first);
  manager.release(*second);
  BOOST_TEST(flock_nonblocking(sidecar("x"), "-x") == 0);
}

// The holding thread asks again: shared after shared is granted at once,
// anything else stays busy.
BOOST_FIXTURE_TEST_CASE(a_shared_handle_s_thread_takes_the_name_shared_again, ManagerFixture) {
  const LockHandle first = manager.acquire("x", {std::nullopt, Mode::shared});
  const std::optional<LockHandle> second = manager.try_acquire("x", Mode::shared);
  BOOST_REQUIRE(second);
  const LockHandle third = manager.acquire("x", {std::chrono::seconds(5), Mode::shared});
  BOOST_TEST(!manager.try_acquire("x", Mode::exclusive));
  manager.release(first);
  manager.release(*second);
  manager.release(third);
  BOOST_TEST(flock_nonblocking(sidecar("x"), "-x") == 0);
}

BOOST_FIXTURE_TEST_CASE(acquire_times_out_while_another_process_holds, ManagerFixture) {
  Process other = holder("x");
  std::error_code ec;
  const auto start = std::chrono::steady_clock::now();
  manager.acquire("x", {100ms}, ec);
  BOOST_TEST((ec == errc::timeout));
  BOOST_TEST((ec == lock_errc::timeout));
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 100ms));
  try {
    manager.acquire("x", {10ms});
    BOOST_FAIL("acquire must throw");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == lock_errc::timeout));
    BOOST_TEST(e.path() == sidecar("x"));
  }
  other.close_stdin();
  BOOST_TEST(other.exit_code() == kChildOk);
  manager.release(manager.acquire("x", {10s}));
}

BOOST_FIXTURE_TEST_CASE(acquire_waits_for_another_process_to_release, ManagerFixture) {
  Process other = holder("x");
  std::promise<LockHandle> got;
  std::jthread waiter([&] { got.set_value(manager.acquire("x", {30s})); });
  BOOST_REQUIRE(eventually([&] { return waiting_here(lock_dir / "x"); }));
  other.close_stdin();
  const LockHandle handle = got.get_future().get();
  waiter.join();
  BOOST_TEST(other.exit_code() == kChildOk);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 1);
  manager.release(handle);
}

BOOST_FIXTURE_TEST_CASE(the_holding_thread_asking_again_is_busy_not_a_deadlock, ManagerFixture) {
  const LockHandle handle = manager.acquire("x");
  std::error_code ec;
  manager.acquire("x", {}, ec);
  BOOST_TEST((ec == errc::busy));
  BOOST_TEST((ec == lock_errc::acquire_failed));
  manager.release(handle);
}

BOOST_FIXTURE_TEST_CASE(a_handle_may_be_released_by_another_thread, ManagerFixture) {
  const LockHandle handle = manager.acquire("x");
  std::error_code ec;
  std::jthread([&] { manager.release(handle, ec); }).join();
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
  // The acquiring thread holds nothing now: no re-entry.
  manager.release(manager.acquire("x", {1s}));
}

BOOST_FIXTURE_TEST_CASE(is_locked_sees_holders_of_every_process_and_creates_nothing,
                        ManagerFixture) {
  BOOST_TEST(!manager.is_locked("x"));
  BOOST_TEST(!fs::exists(lock_dir));
  for (const char* mode : {"exclusive", "shared"}) {
    for (const char* face : {"acquire", "request"}) {
      BOOST_TEST_CONTEXT(mode << " through " << face) {
        Process other = holder("x", mode, face);
        BOOST_TEST(manager.is_locked("x"));
        BOOST_TEST(!manager.is_locked("y"));
        other.close_stdin();
        BOOST_TEST(other.exit_code() == kChildOk);
        BOOST_TEST(!manager.is_locked("x"));
      }
    }
  }
  // This process is "any process" too, and so is flock(1).
  const LockHandle handle = manager.acquire("x");
  BOOST_TEST(manager.is_locked("x"));
  manager.release(handle);
  Process foreign = Process::flock_holder(sidecar("x"));
  foreign.expect_line("locked");
  BOOST_TEST(manager.is_locked("x"));
  foreign.close_stdin();
  foreign.wait();
  BOOST_TEST(!manager.is_locked("x"));
  BOOST_TEST(!fs::exists(lock_dir / "y"));
}

BOOST_FIXTURE_TEST_CASE(is_locked_reports_a_refused_sidecar, ManagerFixture) {
  fs::create_directories(lock_dir / "x");
  fs::create_symlink(dir / "elsewhere", sidecar("x"));
  std::error_code ec;
  BOOST_TEST(!manager.is_locked("x", ec));
  BOOST_TEST((ec == errc::not_a_regular_file));
  BOOST_TEST((ec == lock_errc::acquire_failed));
  BOOST_CHECK_THROW(manager.is_locked("x"), Error);
  manager.acquire("x", {}, ec);
  BOOST_TEST((ec == errc::not_a_regular_file));
  BOOST_TEST(!fs::exists(dir / "elsewhere"));
}

BOOST_FIXTURE_TEST_CASE(os_errors_keep_their_errno_and_are_acquire_failures, ManagerFixture) {
  fs::create_directories(lock_dir);
  write_file(lock_dir / "file", "a file where a pack would be");
  std::error_code ec;
  manager.acquire("file/x", {}, ec);
  BOOST_TEST(ec.value() == ENOTDIR);
  BOOST_TEST((ec == lock_errc::acquire_failed));
  try {
    manager.acquire("file/x");
    BOOST_FAIL("acquire must throw");
  } catch (const Error& e) {
    BOOST_TEST(e.code().value() == ENOTDIR);
    BOOST_TEST(e.path() == sidecar("file/x"));
  }
}

BOOST_FIXTURE_TEST_CASE(the_last_copy_of_a_manager_releases_its_handles, ManagerFixture) {
  {
    const LockManager copy = manager;
    copy.acquire("x");
    manager = LockManager(dir / "other");
    BOOST_TEST(flock_nonblocking(sidecar("x")) == 1);
  }
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

BOOST_FIXTURE_TEST_CASE(async_acquire_completes_with_a_handle_never_inside_the_call,
                        ManagerFixture) {
  asio::io_context io;
  bool initiated = false;
  bool ran_inside = false;
  Outcome<LockHandle> outcome;
  manager.async_acquire(io.get_executor(), "x", {}, [&](std::error_code ec, LockHandle handle) {
    ran_inside = !initiated;
    record(outcome)(ec, std::move(handle));
  });
  initiated = true;
  io.run();
  BOOST_TEST(!ran_inside);
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST(!outcome.ec, outcome.ec.message());
  BOOST_TEST(outcome.value.name == "x");
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 1);
  manager.release(outcome.value);
  BOOST_TEST(flock_nonblocking(sidecar("x")) == 0);
}

BOOST_FIXTURE_TEST_CASE(async_acquire_waits_for_the_holder_with_use_future, ManagerFixture) {
  Process other = holder("x", "shared");
  asio::io_context io;
  std::future<LockHandle> future =
      manager.async_acquire(io.get_executor(), "x", {}, asio::use_future);
  std::jthread runner([&] { io.run(); });
  BOOST_REQUIRE(eventually([&] { return waiting_here(lock_dir / "x"); }));
  BOOST_TEST((future.wait_for(0s) == std::future_status::timeout));
  other.close_stdin();
  const LockHandle handle = future.get();
  runner.join();
  BOOST_TEST(other.exit_code() == kChildOk);
  BOOST_TEST(flock_nonblocking(sidecar("x"), "-s") == 1);
  manager.release(handle);
}

BOOST_FIXTURE_TEST_CASE(async_acquire_with_use_awaitable, ManagerFixture) {
  asio::io_context io;
  LockHandle handle;
  std::error_code timeout;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const auto executor = co_await asio::this_coro::executor;
        handle = co_await manager.async_acquire(executor, "x", {}, asio::use_awaitable);
        // Not tied to a thread: a second request waits like any other.
        try {
          co_await manager.async_acquire(executor, "x", {50ms}, asio::use_awaitable);
        } catch (const std::system_error& e) {
          timeout = e.code();
        }
      },
      asio::detached);
  io.run();
  BOOST_TEST(handle.name == "x");
  BOOST_TEST((timeout == lock_errc::timeout));
  manager.release(handle);
}

BOOST_FIXTURE_TEST_CASE(async_acquire_with_deferred_starts_when_launched, ManagerFixture) {
  asio::io_context io;
  auto operation = manager.async_acquire(io.get_executor(), "x", {}, asio::experimental::deferred);
  io.run();
  BOOST_TEST(!manager.is_locked("x"));  // nothing happened yet
  Outcome<LockHandle> outcome;
  std::move(operation)(record(outcome));
  io.restart();
  io.run();
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST(!outcome.ec, outcome.ec.message());
  BOOST_TEST(manager.is_locked("x"));
  manager.release(outcome.value);
}

BOOST_FIXTURE_TEST_CASE(async_acquire_is_cancelled_by_every_cancellation_type, ManagerFixture) {
  Process other = holder("x");
  asio::io_context io;
  for (const auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial,
                          asio::cancellation_type::total}) {
    BOOST_TEST_CONTEXT("type " << static_cast<int>(type)) {
      asio::cancellation_signal signal;
      Outcome<LockHandle> outcome;
      manager.async_acquire(io.get_executor(), "x", {},
                            asio::bind_cancellation_slot(signal.slot(), record(outcome)));
      run_until(io, [&] { return waiting_here(lock_dir / "x"); });
      BOOST_TEST(manager.query().pending.size() == 1u);
      signal.emit(type);
      io.restart();
      io.run_for(50ms);
      BOOST_TEST(outcome.calls == 1);
      BOOST_TEST((outcome.ec == errc::cancelled));
      BOOST_TEST((outcome.ec == std::errc::operation_canceled));
      BOOST_TEST((outcome.ec == lock_errc::acquire_failed));
      BOOST_TEST(!waiting_here(lock_dir / "x"));
      BOOST_TEST(manager.query().pending.empty());
    }
  }
  other.close_stdin();
  BOOST_TEST(other.exit_code() == kChildOk);
}

BOOST_FIXTURE_TEST_CASE(async_acquire_times_out, ManagerFixture) {
  Process other = holder("x");
  asio::io_context io;
  Outcome<LockHandle> outcome;
  manager.async_acquire(io.get_executor(), "x", {100ms}, record(outcome));
  io.run();
  BOOST_TEST(outcome.calls == 1);
  BOOST_TEST((outcome.ec == lock_errc::timeout));
  BOOST_TEST(manager.query().pending.empty());
}

BOOST_FIXTURE_TEST_CASE(a_context_destroyed_mid_wait_leaves_no_request_behind, ManagerFixture) {
  Process other = holder("x");
  int calls = 0;
  {
    asio::io_context doomed;
    manager.async_acquire(doomed.get_executor(), "x", {},
                          [&](std::error_code, LockHandle) { ++calls; });
    run_until(doomed, [&] { return waiting_here(lock_dir / "x"); });
    BOOST_TEST(manager.query().pending.size() == 1u);
  }
  BOOST_TEST(calls == 0);
  BOOST_TEST(manager.query().pending.empty());
  BOOST_TEST(!waiting_here(lock_dir / "x"));
}

// Told of hijacks through a manager's logger: wait() returns once one came.
class HijackSignal {
 public:
  LockOptions options() {
    LockOptions options;
    options.heartbeat = 200ms;
    options.stale_after = 2s;
    options.logger = [this](const LogEvent& event) {
      if (event.kind == LogEventKind::hijacked) came_.open();
    };
    return options;
  }
  // False after 20 s (a safety limit against hanging).
  bool wait() { return came_.wait(); }

 private:
  Gate came_;
};

BOOST_FIXTURE_TEST_CASE(a_hijacked_handle_reports_hijacked_on_release, ManagerFixture) {
  HijackSignal hijack;
  const LockManager watched(lock_dir, hijack.options());
  const LockHandle handle = watched.acquire("x");
  fs::remove(sidecar("x"));  // `rm`: the hold is hijacked
  BOOST_REQUIRE(hijack.wait());
  std::error_code ec;
  watched.release(handle, ec);
  BOOST_TEST((ec == errc::hijacked), ec.message());
  BOOST_TEST((ec == lock_errc::not_held));
  watched.release(handle, ec);
  BOOST_TEST((ec == errc::not_held));
  // The hijacked hold let go of its unlinked inode: the lock is free here.
  BOOST_TEST(watched.try_acquire("x").has_value());
}

BOOST_FIXTURE_TEST_CASE(a_hijacked_request_sees_lost_and_reports_hijacked, ManagerFixture) {
  HijackSignal hijack;
  const LockManager watched(lock_dir, hijack.options());
  bool lost_before = true, lost_after = false;
  std::error_code ec;
  watched.request("x", {},
                  [&](std::optional<Lock> lock) {
                    lost_before = lock->lost();
                    fs::remove(sidecar("x"));
                    BOOST_REQUIRE(hijack.wait());
                    lost_after = lock->lost();
                  },
                  ec);
  BOOST_TEST(!lost_before);
  BOOST_TEST(lost_after);
  BOOST_TEST((ec == errc::hijacked), ec.message());
  BOOST_TEST(watched.query().held.empty());
}

BOOST_FIXTURE_TEST_CASE(a_manager_with_lock_options_uses_their_sidecar_name, ManagerFixture) {
  LockOptions options;
  options.sidecar_name = "LOCK";
  const LockManager named(lock_dir, options);
  const LockHandle handle = named.acquire("x");
  BOOST_TEST(flock_nonblocking(lock_dir / "x" / "LOCK") == 1);
  BOOST_TEST(!fs::exists(sidecar("x")));
  BOOST_TEST(named.is_locked("x"));
  BOOST_TEST(!manager.is_locked("x"));  // another lock of the pack
  BOOST_TEST(named.query().held.size() == 1u);
  BOOST_TEST(manager.query().held.empty());
  named.release(handle);
  // Another process's holder of the named sidecar is seen too.
  fs::create_directories(lock_dir / "y");
  Process other = Process::flock_holder(lock_dir / "y" / "LOCK");
  other.expect_line("locked");
  BOOST_TEST(named.is_locked("y"));
  BOOST_TEST(!manager.is_locked("y"));
  const LockManagerSnapshot seen = named.query();
  BOOST_REQUIRE(seen.held.size() == 1u);
  BOOST_TEST(seen.held[0].name == "y");
  BOOST_TEST(seen.held[0].pid == other.pid());
  BOOST_TEST(manager.query().held.empty());
  other.close_stdin();
}

BOOST_AUTO_TEST_SUITE_END()
