// try_lock / try_rlock, the Go face: Root and its lock file name, Context
// cancellation and deadline (waking a waiter at once, recovering nothing
// once done), UnlockFunc called twice, from many threads, or never.

#include <signal.h>

#include <future>
#include <thread>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct RootFixture {
  TempDir dir;
  fs::path store = dir / "store";
  Root root = [this] {
    fs::create_directory(store);
    return Root::open(store);
  }();
  fs::path lock_file = store / ".grex-lock";

  Process holder(Mode mode) {
    Process held = Process::child({"hold", store.string(), std::string(to_string(mode))});
    held.expect_line("locked");
    return held;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(try_lock_face)

BOOST_FIXTURE_TEST_CASE(try_lock_takes_and_releases_the_root_s_lock_file, RootFixture) {
  root.lock_file(".posixage.lock");
  const Context ctx;
  UnlockFunc unlock = try_lock(ctx, root);
  BOOST_TEST(static_cast<bool>(unlock));
  BOOST_TEST(flock_nonblocking(store / ".posixage.lock") == 1);
  BOOST_TEST(!fs::exists(lock_file));
  const auto record = read_owner_record(store, ".posixage.lock");
  BOOST_REQUIRE(record.has_value());
  BOOST_TEST(record->pid == ::getpid());
  BOOST_TEST(!unlock());
  BOOST_TEST(flock_nonblocking(store / ".posixage.lock") == 0);
  BOOST_TEST(!read_owner_record(store, ".posixage.lock").has_value());
  BOOST_TEST(!unlock());  // the first result, again
  BOOST_TEST((UnlockFunc()() == errc::not_held));
}

// A Root is its directory, as Go's os.Root is: renamed while held, the
// hold is not lost and stays on that directory's lock file.
BOOST_FIXTURE_TEST_CASE(a_root_renamed_while_held_keeps_its_lock, RootFixture) {
  Context ctx;
  ctx.with_heartbeat(20ms).with_stale_after(1s);
  UnlockFunc unlock = try_lock(ctx, root);
  BOOST_REQUIRE(static_cast<bool>(unlock));
  const fs::path moved = store.string() + ".moved";
  fs::rename(store, moved);
  // Several beats, each of which would find a lock that follows the path lost.
  BOOST_TEST(!eventually([&] { return unlock.lost(); }, 200ms));
  BOOST_TEST(flock_nonblocking(moved / ".grex-lock") == 1);
  BOOST_TEST(!unlock());
  BOOST_TEST(flock_nonblocking(moved / ".grex-lock") == 0);
}

BOOST_FIXTURE_TEST_CASE(try_rlock_shares_and_try_lock_excludes, RootFixture) {
  Process shared = holder(Mode::shared);
  Context ctx;
  UnlockFunc reader = try_rlock(ctx, root);
  BOOST_TEST(flock_nonblocking(lock_file, "-s") == 0);
  BOOST_TEST(flock_nonblocking(lock_file, "-x") == 1);
  std::error_code ec, cause;
  // From another thread: this one holds, and asking again would be re-entry.
  std::thread([&] { (void)try_lock(Context().with_timeout(200ms), root, ec, &cause); }).join();
  BOOST_TEST((ec == errc::lock_unsuccessful));
  BOOST_TEST((cause == errc::timeout), cause.message());
  BOOST_TEST(!reader());
}

BOOST_FIXTURE_TEST_CASE(the_deadline_ends_the_wait, RootFixture) {
  Process exclusive = holder(Mode::exclusive);
  std::error_code ec, cause;
  const auto start = std::chrono::steady_clock::now();
  UnlockFunc unlock = try_lock(Context().with_timeout(300ms), root, ec, &cause);
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 300ms));
  BOOST_TEST(!unlock);
  BOOST_TEST((ec == errc::lock_unsuccessful));
  BOOST_TEST(ec.message() == "store is locked");
  BOOST_TEST((cause == errc::timeout), cause.message());
  try {
    (void)try_lock(Context().with_timeout(10ms), root);
    BOOST_FAIL("must throw");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == errc::lock_unsuccessful));
    BOOST_TEST((e.cause() == errc::timeout));
    BOOST_TEST(std::string(e.what()) ==
               "lock " + lock_file.string() + ": store is locked: timed out waiting for the lock");
  }
}

BOOST_FIXTURE_TEST_CASE(cancelling_wakes_a_waiter_at_the_kernel, RootFixture) {
  Process exclusive = holder(Mode::exclusive);
  Context ctx;
  std::error_code ec, cause;
  auto waiting = std::async(std::launch::async, [&] { return try_lock(ctx, root, ec, &cause); });
  BOOST_REQUIRE(eventually([&] { return waiting_here(store); }));
  Context copy = ctx;
  copy.cancel();  // copies share the cancellation
  // The holder never lets go: only the cancellation can end this wait.
  BOOST_REQUIRE(waiting.wait_for(10s) == std::future_status::ready);
  BOOST_TEST(!waiting.get());
  BOOST_TEST((ec == errc::lock_unsuccessful));
  BOOST_TEST((cause == errc::cancelled), cause.message());
  BOOST_TEST((cause == std::errc::operation_canceled));
  BOOST_TEST(ctx.cancelled());
  BOOST_TEST((ctx.err() == errc::cancelled));
}

BOOST_FIXTURE_TEST_CASE(cancelling_ends_a_wait_queued_in_this_process, RootFixture) {
  const PackLock same = PackLock::open(store);
  PackLockHold hold = same.acquire();
  Context ctx;
  std::error_code ec, cause;
  auto waiting = std::async(std::launch::async, [&] { return try_lock(ctx, root, ec, &cause); });
  BOOST_REQUIRE(eventually([&] { return waiting_count(same) == 1; }));
  ctx.cancel();
  BOOST_REQUIRE(waiting.wait_for(10s) == std::future_status::ready);
  BOOST_TEST(!waiting.get());
  BOOST_TEST((cause == errc::cancelled), cause.message());
  BOOST_TEST(waiting_count(same) == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_done_context_attempts_once_and_recovers_nothing, RootFixture) {
  Context done;
  done.cancel();
  {
    // Free: the first attempt is made all the same, as in Go.
    UnlockFunc unlock = try_lock(done, root);
    BOOST_TEST(!unlock());
  }
  Process stopped = Process::child({"agent", store.string(), "heartbeat=50", "stale=300"});
  stopped.write_line("acquire");
  const auto locked = stopped.wait_for("locked");
  BOOST_REQUIRE(locked.has_value());
  stopped.stop();
  BOOST_REQUIRE(eventually([&] {
    std::error_code ec;
    return observe(store, 300ms, ec).state == PackState::stale;
  }));
  const ino_t stale_inode = sidecar_inode(store);
  done.with_stale_after(300ms).with_heartbeat(50ms).with_stale_policy(StalePolicy::mtime);
  std::error_code ec, cause;
  (void)try_lock(done, root, ec, &cause);
  BOOST_TEST((cause == errc::cancelled), cause.message());
  BOOST_TEST(sidecar_inode(store) == stale_inode);
  // A live context with the same settings recovers it.
  Context live = Context().with_stale_after(300ms).with_heartbeat(50ms).with_stale_policy(
      StalePolicy::mtime).with_timeout(5s);
  UnlockFunc unlock = try_lock(live, root, ec, &cause);
  BOOST_TEST(!ec, cause.message());
  BOOST_TEST(sidecar_inode(store) != stale_inode);
  stopped.kill(SIGCONT);
  BOOST_TEST(stopped.wait_for("on_lost").has_value());
}

BOOST_FIXTURE_TEST_CASE(unlock_is_idempotent_across_threads, RootFixture) {
  const UnlockFunc unlock = try_lock(Context(), root);
  BOOST_TEST(flock_nonblocking(lock_file) == 1);
  std::promise<void> go;
  std::shared_future<void> start = go.get_future().share();
  std::vector<std::future<std::error_code>> results;
  for (int i = 0; i < 8; ++i) {
    const UnlockFunc copy = unlock;
    results.push_back(std::async(std::launch::async, [copy, start] {
      start.wait();
      return copy();
    }));
  }
  go.set_value();
  for (auto& result : results) BOOST_TEST(!result.get());
  BOOST_TEST(flock_nonblocking(lock_file) == 0);
  // Released once: a new holder is not released by a late call.
  UnlockFunc next = try_lock(Context(), root);
  BOOST_TEST(!unlock());
  BOOST_TEST(flock_nonblocking(lock_file) == 1);
  BOOST_TEST(!next());
}

BOOST_FIXTURE_TEST_CASE(an_unlock_never_called_releases_with_its_last_copy, RootFixture) {
  {
    UnlockFunc first = try_lock(Context(), root);
    {
      const UnlockFunc second = first;
      first = UnlockFunc();
      BOOST_TEST(flock_nonblocking(lock_file) == 1);
    }
  }
  BOOST_TEST(flock_nonblocking(lock_file) == 0);
}

BOOST_FIXTURE_TEST_CASE(the_context_logger_hears_a_hijack, RootFixture) {
  std::promise<LogEvent> heard;
  Context ctx = Context().with_heartbeat(20ms).with_stale_after(200ms).with_logger(
      [&heard](const LogEvent& event) {
        if (event.kind == LogEventKind::hijacked) heard.set_value(event);
      });
  UnlockFunc unlock = try_lock(ctx, root);
  BOOST_TEST(!unlock.lost());
  fs::remove(lock_file);
  auto event = heard.get_future();
  BOOST_REQUIRE(event.wait_for(10s) == std::future_status::ready);
  BOOST_TEST(event.get().pack == fs::canonical(store));
  BOOST_TEST(unlock.lost());
  BOOST_TEST(!unlock());
}

BOOST_FIXTURE_TEST_CASE(failures_name_their_cause, RootFixture) {
  std::error_code ec, cause;
  (void)try_lock(Context(), Root(), ec, &cause);
  BOOST_TEST((ec == errc::lock_unsuccessful));
  BOOST_TEST((cause == errc::not_open));
  Root bad = root;
  bad.lock_file("a/b");
  (void)try_lock(Context(), bad, ec, &cause);
  BOOST_TEST((cause == std::errc::invalid_argument));
  (void)try_lock(Context().with_heartbeat(-1s), root, ec, &cause);  // 0: not given
  BOOST_TEST((cause == std::errc::invalid_argument));
  (void)Root::open(dir / "missing", ec);
  BOOST_TEST((ec == std::errc::no_such_file_or_directory));
  BOOST_CHECK_THROW(Root::open(dir / "missing"), Error);
  // Re-entry by the holding thread: at once, not a deadlock.
  UnlockFunc held = try_lock(Context(), root);
  (void)try_lock(Context(), root, ec, &cause);
  BOOST_TEST((cause == errc::busy));
}

BOOST_AUTO_TEST_SUITE_END()
