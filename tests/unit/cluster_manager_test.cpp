// LockManager over etcd: both faces and query() against a real etcd, with
// etcdctl and other processes as the peers.

#include <signal.h>
#include <unistd.h>

#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "etcd_server.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct ManagerFixture {
  EtcdServer server;
  ClusterOptions cluster = options();
  LockManager manager{cluster, "jobs/"};

  ClusterOptions options() const {
    ClusterOptions options;
    options.endpoints = server.endpoints();
    return options;
  }

  // The cluster lock behind the manager's lock `name`.
  ClusterLockView view(const std::string& name) const {
    return ClusterLock::open(cluster, "jobs/" + name).observe();
  }
  std::size_t keys(const std::string& name) const {
    const ClusterLockView seen = view(name);
    return seen.holders.size() + seen.waiters.size();
  }

  // Another process holding the manager's lock `name` until its stdin closes.
  Process holder(const std::string& name, const std::string& face = "request") const {
    Process child =
        Process::child({"cluster_named_hold", server.endpoints_flag(), "jobs/", name, "exclusive", face});
    child.expect_line("locked");
    return child;
  }

  // `etcdctl lock jobs/NAME`, holding once it has printed its key.
  Process etcdctl_holder(const std::string& name) const {
    Process etcdctl(server.etcdctl({"lock", "jobs/" + name}));
    BOOST_REQUIRE(etcdctl.read_line(20s).has_value());
    return etcdctl;
  }
};

RequestOptions waiting(Mode mode = Mode::exclusive) {
  RequestOptions options;
  options.mode = mode;
  options.timeout = 20s;
  return options;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cluster_manager)

BOOST_FIXTURE_TEST_CASE(a_handle_holds_the_cluster_lock_under_the_prefix, ManagerFixture) {
  const LockHandle handle = manager.acquire("db/main");
  BOOST_TEST(handle.name == "db/main");
  BOOST_TEST(handle.fencing_token == view("db/main").holders.at(0).fencing_token);
  BOOST_TEST(manager.lock_dir().empty());
  BOOST_TEST(manager.is_locked("db/main"));
  BOOST_TEST(view("db/main").holders.size() == 1u);
  // The lock is the cluster's: another client of it finds it busy.
  std::error_code ec;
  BOOST_TEST(!ClusterLock::open(cluster, "jobs/db/main").try_acquire(Mode::exclusive, ec));
  BOOST_TEST((ec == errc::busy));
  manager.release(handle);
  BOOST_TEST(!manager.is_locked("db/main"));
  BOOST_TEST(keys("db/main") == 0u);
  manager.release(handle, ec);
  BOOST_TEST((ec == lock_errc::not_held));
}

BOOST_FIXTURE_TEST_CASE(an_etcdctl_holder_keeps_both_faces_out, ManagerFixture) {
  Process etcdctl = etcdctl_holder("x");
  BOOST_TEST(manager.is_locked("x"));
  BOOST_TEST(!manager.try_acquire("x").has_value());
  BOOST_TEST(!manager.try_acquire("x", Mode::shared).has_value());
  std::error_code ec;
  (void)manager.acquire("x", {300ms, Mode::exclusive}, ec);
  BOOST_TEST((ec == lock_errc::timeout));
  RequestOptions if_available;
  if_available.if_available = true;
  bool called_without_lock = false;
  manager.request("x", if_available, [&](std::optional<Lock> lock) { called_without_lock = !lock; });
  BOOST_TEST(called_without_lock);
  // etcdctl's holder would never notice a steal: refused.
  RequestOptions steal;
  steal.steal = true;
  manager.request("x", steal, [](std::optional<Lock>) { BOOST_FAIL("granted"); }, ec);
  BOOST_TEST((ec == errc::busy));
  // None of them left a key behind.
  BOOST_TEST(keys("x") == 1u);
  etcdctl.kill(SIGINT);
  BOOST_TEST(eventually([&] { return !manager.is_locked("x"); }));
  BOOST_TEST(manager.try_acquire("x").has_value());
}

BOOST_FIXTURE_TEST_CASE(bad_names_and_an_unreachable_cluster_give_the_lock_codes, ManagerFixture) {
  std::error_code ec;
  (void)manager.acquire("../x", {}, ec);
  BOOST_TEST((ec == lock_errc::invalid_name));
  BOOST_TEST(!manager.is_locked("a//b", ec));
  BOOST_TEST((ec == lock_errc::invalid_name));
  ClusterOptions nowhere;
  nowhere.endpoints = {"127.0.0.1:" + std::to_string(free_loopback_port())};
  nowhere.dial_timeout = 300ms;
  const LockManager unreachable(nowhere, "jobs/");
  (void)unreachable.acquire("a", {}, ec);
  BOOST_TEST((ec == errc::cluster_unavailable));
  BOOST_TEST((ec == lock_errc::acquire_failed));
  try {
    (void)unreachable.try_acquire("a");
    BOOST_FAIL("no error");
  } catch (const Error& error) {
    BOOST_TEST(std::string(error.what()).find("jobs/a") != std::string::npos, error.what());
  }
}

BOOST_FIXTURE_TEST_CASE(the_holding_thread_asking_again_is_busy_not_a_deadlock, ManagerFixture) {
  const LockHandle handle = manager.acquire("a");
  std::error_code ec;
  (void)manager.acquire("a", {20s, Mode::exclusive}, ec);
  BOOST_TEST((ec == errc::busy));
  manager.release(handle);
  manager.request("b", waiting(), [&](std::optional<Lock>) {
    manager.request("b", waiting(), [](std::optional<Lock>) { BOOST_FAIL("granted twice"); }, ec);
  });
  BOOST_TEST((ec == errc::busy));
  // Another thread may wait, and gets it once the first lets go.
  const LockHandle again = manager.acquire("a");
  std::error_code other_ec;
  LockHandle others;
  std::jthread other([&] { others = manager.acquire("a", {20s, Mode::exclusive}, other_ec); });
  BOOST_REQUIRE(eventually([&] { return view("a").waiters.size() == 1u; }));
  manager.release(again);
  other.join();
  BOOST_TEST(!other_ec);
  manager.release(others);
}

BOOST_FIXTURE_TEST_CASE(a_reader_may_read_again_at_once_but_never_queue_behind_itself,
                        ManagerFixture) {
  const LockHandle first = manager.acquire("r", {20s, Mode::shared});
  const LockHandle again = manager.acquire("r", {20s, Mode::shared});
  BOOST_TEST(view("r").holders.size() == 2u);
  manager.release(again);
  // A writer queues behind the reader; the reader's thread reading again
  // would queue behind the writer, which waits for it: busy instead.
  Process writer(server.etcdctl({"lock", "jobs/r"}));
  BOOST_REQUIRE(eventually([&] { return view("r").waiters.size() == 1u; }));
  std::error_code ec;
  (void)manager.acquire("r", {20s, Mode::shared}, ec);
  BOOST_TEST((ec == errc::busy));
  BOOST_TEST(!manager.try_acquire("r", Mode::shared).has_value());
  BOOST_TEST(keys("r") == 2u);
  manager.release(first);
  BOOST_TEST(writer.read_line(20s).has_value());  // the writer holds
  writer.kill(SIGINT);
}

BOOST_FIXTURE_TEST_CASE(a_waiting_request_is_granted_when_the_other_process_lets_go,
                        ManagerFixture) {
  Process other = holder("x", "acquire");
  const std::int64_t other_token = view("x").holders.at(0).fencing_token;
  Gate granted;
  std::int64_t my_token = 0, seen_token = 0;
  std::error_code waiter_ec;
  std::jthread waiter([&] {
    manager.request("x", waiting(), [&](std::optional<Lock> lock) {
      my_token = lock ? lock->fencing_token() : -1;
      seen_token = view("x").holders.at(0).fencing_token;
      granted.open();
    }, waiter_ec);
  });
  BOOST_REQUIRE(eventually([&] { return view("x").waiters.size() == 1u; }));
  other.close_stdin();
  BOOST_TEST(other.exit_code(20s) == 0);
  BOOST_REQUIRE(granted.wait());
  waiter.join();
  BOOST_TEST(!waiter_ec);
  BOOST_TEST(my_token == seen_token);
  BOOST_TEST(my_token > other_token);
}

BOOST_FIXTURE_TEST_CASE(a_steal_takes_a_request_s_lock_and_it_is_told, ManagerFixture) {
  const LockManager second(cluster, "jobs/");
  Gate held, stolen;
  std::optional<Lock> robbed;
  std::error_code robbed_ec;
  std::jthread first([&] {
    manager.request("x", waiting(), [&](std::optional<Lock> lock) {
      robbed = lock;
      held.open();
      (void)stolen.wait();
    }, robbed_ec);
  });
  BOOST_REQUIRE(held.wait());
  RequestOptions steal;
  steal.steal = true;
  bool granted = false;
  second.request("x", steal, [&](std::optional<Lock> lock) {
    granted = lock.has_value();
    // Told before the stealer's callback runs (its watch may tell it as soon).
    BOOST_TEST(robbed->lost());
  });
  stolen.open();
  first.join();
  BOOST_TEST(granted);
  BOOST_TEST((robbed_ec == errc::hijacked));
  BOOST_TEST((robbed_ec == lock_errc::not_held));
  BOOST_TEST(keys("x") == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_key_deleted_by_etcdctl_is_a_lost_request, ManagerFixture) {
  std::error_code ec;
  manager.request("x", waiting(), [&](std::optional<Lock> lock) {
    const std::string key = view("x").holders.at(0).key;
    Process del(server.etcdctl({"del", key}));
    BOOST_TEST(del.exit_code(20s) == 0);
    BOOST_TEST(eventually([&] { return lock->lost(); }));
  }, ec);
  BOOST_TEST((ec == errc::hijacked));
}

BOOST_FIXTURE_TEST_CASE(query_lists_every_party_with_its_record, ManagerFixture) {
  Process other = holder("q");
  asio::io_context io;
  Outcome<LockHandle> mine;
  manager.async_acquire(io.get_executor(), "q", {20s, Mode::exclusive}, record(mine));
  BOOST_REQUIRE(eventually([&] {
    io.poll();
    return view("q").waiters.size() == 1u;
  }));
  Process etcdctl(server.etcdctl({"lock", "jobs/q"}));
  BOOST_REQUIRE(eventually([&] { return view("q").waiters.size() == 2u; }));
  const ClusterLockView seen = view("q");

  const LockManagerSnapshot snapshot = manager.query();
  BOOST_REQUIRE(snapshot.held.size() == 1u);
  const LockInfo& held = snapshot.held[0];
  BOOST_TEST(held.name == "q");
  BOOST_TEST(held.pid == other.pid());
  BOOST_TEST(held.client_id == std::to_string(other.pid()) + "@" + held.host);
  BOOST_TEST(!held.host.empty());
  BOOST_TEST(held.command.find("cluster_named_hold") != std::string::npos, held.command);
  BOOST_TEST((held.mode == Mode::exclusive));
  BOOST_TEST(held.fencing_token == seen.holders[0].fencing_token);
  BOOST_TEST(held.held_for.count() > 0);
  // This process's waiter from its own bookkeeping, then etcdctl's key.
  BOOST_REQUIRE(snapshot.pending.size() == 2u);
  BOOST_TEST(snapshot.pending[0].client_id == manager.client_id());
  BOOST_TEST(snapshot.pending[0].pid == ::getpid());
  BOOST_TEST(snapshot.pending[0].fencing_token == 0);
  BOOST_TEST(snapshot.pending[1].client_id == seen.waiters[1].key);
  BOOST_TEST(snapshot.pending[1].pid == 0);

  // Keys of a lock whose name is the prefix without its slash fall in the
  // prefix's range; they are no lock of this manager's.
  {
    const ClusterLockHold outside = ClusterLock::open(cluster, "jobs").try_acquire();
    BOOST_TEST(manager.query().held.size() == 1u);
  }

  other.close_stdin();
  run_until(io, [&] { return mine.calls == 1; });
  BOOST_TEST(!mine.ec);
  const LockManagerSnapshot after = manager.query();
  BOOST_REQUIRE(after.held.size() == 1u);
  BOOST_TEST(after.held[0].client_id == manager.client_id());
  BOOST_TEST(after.held[0].fencing_token == view("q").holders.at(0).fencing_token);
  BOOST_TEST(after.held[0].fencing_token > held.fencing_token);
  manager.release(mine.value);
  BOOST_TEST(etcdctl.read_line(20s).has_value());  // etcdctl holds next
  etcdctl.kill(SIGINT);
}

BOOST_FIXTURE_TEST_CASE(a_cancelled_async_request_leaves_no_key, ManagerFixture) {
  Process other = holder("x");
  asio::io_context io;
  asio::cancellation_signal cancel;
  bool done = false;
  std::error_code request_ec;
  manager.async_request(io.get_executor(), "x", waiting(),
      [](std::optional<Lock>) { BOOST_FAIL("granted"); },
      asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code ec, std::exception_ptr) {
        request_ec = ec;
        done = true;
      }));
  BOOST_REQUIRE(eventually([&] {
    io.poll();
    return view("x").waiters.size() == 1u;
  }));
  cancel.emit(asio::cancellation_type::terminal);
  run_until(io, [&] { return done; });
  BOOST_TEST((request_ec == errc::cancelled));
  // Its key was gone before it completed.
  BOOST_TEST(view("x").waiters.empty());
  BOOST_TEST(manager.query().pending.empty());
}

BOOST_AUTO_TEST_SUITE_END()
