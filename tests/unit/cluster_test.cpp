// The cluster lock against a real etcd, with etcdctl as the peer that
// flock(1) is on one host.

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include <packlock/packlock.hpp>

#include "cancellation.hpp"
#include "cluster_lock.hpp"
#include "etcd_client.hpp"
#include "etcd_server.hpp"
#include "owner_record.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;
using detail::ClusterHold;
using detail::ClusterLockRequest;

namespace {

struct ClusterFixture {
  EtcdServer server;
  std::shared_ptr<const detail::EtcdClient> client = connect();

  std::shared_ptr<const detail::EtcdClient> connect() const {
    detail::EtcdSettings settings;
    settings.endpoints = server.endpoints();
    std::error_code ec;
    auto connected = detail::EtcdClient::connect(settings, ec);
    BOOST_REQUIRE_MESSAGE(connected, ec.message());
    return connected;
  }

  static ClusterLockRequest request(std::string name, Mode mode = Mode::exclusive) {
    ClusterLockRequest r;
    r.name = std::move(name);
    r.contend.mode = mode;
    r.record = detail::record_of_this_process(LockOptions());
    return r;
  }

  std::unique_ptr<ClusterHold> acquire(const ClusterLockRequest& r) const {
    std::error_code ec;
    auto hold = ClusterHold::acquire(client, r, ec);
    BOOST_REQUIRE_MESSAGE(hold, "acquire " << r.name << ": " << ec.message());
    return hold;
  }

  // A wait that must end at its deadline: the lock is busy.
  std::error_code acquire_briefly(ClusterLockRequest r) const {
    r.contend.deadline = std::chrono::steady_clock::now() + 300ms;
    std::error_code ec;
    const auto hold = ClusterHold::acquire(client, r, ec);
    BOOST_TEST(!hold);
    return ec;
  }

  // The keys under "<name>/", in the order of their creation.
  std::vector<std::string> keys(const std::string& name) const {
    etcdserverpb::RangeRequest range;
    range.set_key(name + "/");
    range.set_range_end(name + "0");
    range.set_sort_target(etcdserverpb::RangeRequest::CREATE);
    etcdserverpb::RangeResponse response;
    const auto ec =
        detail::call(*client, client->kv(), &etcdserverpb::KV::Stub::Range, range, response);
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    std::vector<std::string> found;
    for (const auto& kv : response.kvs()) found.push_back(kv.key());
    return found;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(cluster)

BOOST_FIXTURE_TEST_CASE(a_waiting_etcdctl_lock_runs_its_command_only_after_our_release,
                        ClusterFixture) {
  TempDir dir;
  const auto marker = dir / "ran";
  auto hold = acquire(request("job"));
  Process etcdctl(server.etcdctl({"lock", "job", "touch", marker.string()}));
  // etcdctl's key is queued behind ours, and its command has not run.
  BOOST_REQUIRE(eventually([&] { return keys("job").size() == 2; }));
  BOOST_TEST(keys("job").front() == hold->key());
  BOOST_TEST(!fs::exists(marker));
  BOOST_TEST(!hold->release());
  BOOST_TEST(etcdctl.exit_code(20s) == 0);
  BOOST_TEST(fs::exists(marker));
  BOOST_TEST(keys("job").empty());
}

BOOST_FIXTURE_TEST_CASE(an_etcdctl_holder_keeps_us_out_until_it_lets_go, ClusterFixture) {
  Process etcdctl(server.etcdctl({"lock", "job"}));
  // etcdctl prints its key once it holds the lock.
  const auto etcdctl_key = etcdctl.read_line(20s);
  BOOST_REQUIRE(etcdctl_key.has_value());
  BOOST_TEST(etcdctl_key->rfind("job/", 0) == 0u);
  BOOST_TEST((acquire_briefly(request("job")) == errc::timeout));
  BOOST_TEST((acquire_briefly(request("job", Mode::shared)) == errc::timeout));
  // The timed-out waiters left no key behind.
  BOOST_TEST(keys("job") == std::vector<std::string>{*etcdctl_key});
  etcdctl.kill(SIGTERM);
  etcdctl.wait(20s);
  const auto hold = acquire(request("job"));
  BOOST_TEST(keys("job") == std::vector<std::string>{hold->key()});
}

BOOST_FIXTURE_TEST_CASE(readers_share_and_a_writer_waits_for_them_all, ClusterFixture) {
  auto first = acquire(request("db", Mode::shared));
  auto second = acquire(request("db", Mode::shared));
  BOOST_TEST((acquire_briefly(request("db")) == errc::timeout));
  BOOST_TEST(!first->release());
  BOOST_TEST((acquire_briefly(request("db")) == errc::timeout));
  BOOST_TEST(!second->release());
  const auto writer = acquire(request("db"));
  BOOST_TEST(writer->fencing_token() > second->fencing_token());
}

BOOST_FIXTURE_TEST_CASE(a_reader_waits_behind_an_etcdctl_key, ClusterFixture) {
  auto reader = acquire(request("db", Mode::shared));
  TempDir dir;
  Process etcdctl(server.etcdctl({"lock", "db", "touch", (dir / "ran").string()}));
  BOOST_REQUIRE(eventually([&] { return keys("db").size() == 2; }));
  // etcdctl's key is unknown to us, so it excludes: a second reader queues.
  BOOST_TEST((acquire_briefly(request("db", Mode::shared)) == errc::timeout));
  BOOST_TEST(!fs::exists(dir / "ran"));
  BOOST_TEST(!reader->release());
  BOOST_TEST(etcdctl.exit_code(20s) == 0);
  BOOST_TEST(fs::exists(dir / "ran"));
}

BOOST_FIXTURE_TEST_CASE(a_waiter_whose_lease_went_while_it_waited_is_not_granted,
                        ClusterFixture) {
  auto holder = acquire(request("job"));
  std::error_code waiter_ec;
  bool granted = false;
  std::jthread waiter([&] {
    ClusterLockRequest r = request("job");
    r.contend.deadline = std::chrono::steady_clock::now() + 20s;
    granted = ClusterHold::acquire(client, r, waiter_ec) != nullptr;
  });
  BOOST_REQUIRE(eventually([&] { return keys("job").size() == 2; }));
  const std::string waiter_key = keys("job").back();
  Process revoke(server.etcdctl({"lease", "revoke", waiter_key.substr(waiter_key.find('/') + 1)}));
  BOOST_TEST(revoke.exit_code(20s) == 0);
  BOOST_TEST(!holder->release());
  waiter.join();
  BOOST_TEST(!granted);
  BOOST_TEST((waiter_ec == errc::hijacked), waiter_ec.message());
}

BOOST_FIXTURE_TEST_CASE(fencing_tokens_rise_from_one_holder_to_the_next, ClusterFixture) {
  std::int64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    auto hold = acquire(request("fence"));
    BOOST_TEST(hold->fencing_token() > last);
    last = hold->fencing_token();
  }
}

BOOST_FIXTURE_TEST_CASE(a_waiter_is_granted_when_the_holder_releases, ClusterFixture) {
  auto holder = acquire(request("job"));
  std::error_code waiter_ec;
  std::int64_t waiter_token = 0;
  std::jthread waiter([&] {
    ClusterLockRequest r = request("job");
    r.contend.deadline = std::chrono::steady_clock::now() + 20s;
    if (auto hold = ClusterHold::acquire(client, r, waiter_ec)) waiter_token = hold->fencing_token();
  });
  BOOST_REQUIRE(eventually([&] { return keys("job").size() == 2; }));
  BOOST_TEST(!holder->release());
  waiter.join();
  BOOST_TEST(!waiter_ec, waiter_ec.message());
  BOOST_TEST(waiter_token > holder->fencing_token());
}

BOOST_FIXTURE_TEST_CASE(the_heartbeat_keeps_a_hold_past_its_ttl, ClusterFixture) {
  ClusterLockRequest r = request("long");
  r.ttl = 2s;
  r.heartbeat = 300ms;
  const auto hold = acquire(r);
  const auto ttl = hold->ttl();
  BOOST_TEST(ttl.count() >= 2);
  // Two TTLs pass; the key never goes.
  const auto until = std::chrono::steady_clock::now() + 2 * ttl;
  while (std::chrono::steady_clock::now() < until) {
    BOOST_REQUIRE(keys("long") == std::vector<std::string>{hold->key()});
    std::this_thread::sleep_for(100ms);
  }
  BOOST_TEST(!hold->lost());
  BOOST_TEST(!hold->release());
  BOOST_TEST(keys("long").empty());
}

// The loss of a hold, as on_lost reports it.
struct LossWatch {
  std::mutex mutex;
  std::condition_variable told;
  int times = 0;

  void watch(ClusterHold& hold) {
    hold.on_lost([this] {
      std::lock_guard lock(mutex);
      ++times;
      told.notify_all();
    });
  }
  bool wait() {
    std::unique_lock lock(mutex);
    return told.wait_for(lock, 20s, [&] { return times > 0; });
  }
};

// A waiter for `name` on a thread of its own, with up to 20 s to wait.
struct ThreadWaiter {
  std::error_code ec;
  std::unique_ptr<ClusterHold> hold;
  detail::Cancellation never;  // a wait listens to it: the sign it blocks
  std::jthread thread;

  ThreadWaiter(const ClusterFixture& fixture, const std::string& name)
      : thread([this, &fixture, name] {
          ClusterLockRequest r = ClusterFixture::request(name);
          r.contend.deadline = std::chrono::steady_clock::now() + 20s;
          r.contend.cancel = &never;
          hold = ClusterHold::acquire(fixture.client, r, ec);
        }) {}

  // It waits in line (it looked and found the lock held).
  bool blocked() { return eventually([&] { return never.listener_count() == 1; }); }
};

BOOST_FIXTURE_TEST_CASE(a_key_deleted_by_etcdctl_is_a_lost_lock, ClusterFixture) {
  ClusterLockRequest r = request("job");
  r.heartbeat = 10s;  // the watch tells, not the next beat
  const auto hold = acquire(r);
  LossWatch loss;
  loss.watch(*hold);
  Process del(server.etcdctl({"del", hold->key()}));
  BOOST_TEST(del.exit_code(20s) == 0);
  BOOST_REQUIRE(loss.wait());
  BOOST_TEST(hold->lost());
  BOOST_TEST((hold->release() == errc::hijacked));
  BOOST_TEST(loss.times == 1);
}

BOOST_FIXTURE_TEST_CASE(an_on_lost_callback_may_release_its_hold, ClusterFixture) {
  ClusterLockRequest r = request("job");
  r.heartbeat = 10s;
  const auto hold = acquire(r);
  std::mutex mutex;
  std::condition_variable told;
  std::optional<std::error_code> released;
  // Runs on the heartbeat thread, which must not wait for itself.
  hold->on_lost([&] {
    const std::error_code ec = hold->release();
    std::lock_guard lock(mutex);
    released = ec;
    told.notify_all();
  });
  Process del(server.etcdctl({"del", hold->key()}));
  BOOST_TEST(del.exit_code(20s) == 0);
  std::unique_lock lock(mutex);
  BOOST_REQUIRE(told.wait_for(lock, 20s, [&] { return released.has_value(); }));
  BOOST_TEST((*released == errc::hijacked), released->message());
}

BOOST_FIXTURE_TEST_CASE(a_revoked_lease_is_a_lost_lock, ClusterFixture) {
  ClusterLockRequest r = request("job");
  r.heartbeat = 10s;
  const auto hold = acquire(r);
  LossWatch loss;
  loss.watch(*hold);
  char lease[24];
  std::snprintf(lease, sizeof lease, "%llx", static_cast<unsigned long long>(hold->lease()));
  Process revoke(server.etcdctl({"lease", "revoke", lease}));
  BOOST_TEST(revoke.exit_code(20s) == 0);
  BOOST_REQUIRE(loss.wait());
  // Another holder gets it, with a higher fencing token.
  const auto next = acquire(request("job"));
  BOOST_TEST(next->fencing_token() > hold->fencing_token());
  BOOST_TEST((hold->release() == errc::hijacked));
}

BOOST_FIXTURE_TEST_CASE(a_try_of_a_held_lock_is_busy_and_leaves_no_key, ClusterFixture) {
  const auto holder = acquire(request("job"));
  ClusterLockRequest r = request("job");
  r.contend.may_wait = false;
  std::error_code ec;
  BOOST_TEST(!ClusterHold::acquire(client, r, ec));
  BOOST_TEST((ec == errc::busy), ec.message());
  BOOST_TEST(keys("job") == std::vector<std::string>{holder->key()});
}

BOOST_FIXTURE_TEST_CASE(a_cancelled_wait_ends_at_once_and_leaves_no_key, ClusterFixture) {
  const auto holder = acquire(request("job"));
  detail::Cancellation cancel;
  std::error_code waiter_ec;
  bool granted = false;
  std::jthread waiter([&] {
    ClusterLockRequest r = request("job");
    r.contend.cancel = &cancel;
    r.contend.deadline = std::chrono::steady_clock::now() + 20s;
    granted = ClusterHold::acquire(client, r, waiter_ec) != nullptr;
  });
  BOOST_REQUIRE(eventually([&] { return keys("job").size() == 2; }));
  cancel.cancel();
  waiter.join();
  BOOST_TEST(!granted);
  BOOST_TEST((waiter_ec == errc::cancelled), waiter_ec.message());
  // The waiter's key went with its lease before acquire returned.
  BOOST_TEST(keys("job") == std::vector<std::string>{holder->key()});
}

BOOST_FIXTURE_TEST_CASE(the_key_holds_the_owner_record_of_its_holder, ClusterFixture) {
  const auto reader = acquire(request("db", Mode::shared));
  etcdserverpb::RangeRequest range;
  range.set_key(reader->key());
  etcdserverpb::RangeResponse response;
  BOOST_REQUIRE(!detail::call(*client, client->kv(), &etcdserverpb::KV::Stub::Range, range, response));
  BOOST_REQUIRE(response.kvs_size() == 1);
  const auto record = parse_owner_record(response.kvs(0).value());
  BOOST_REQUIRE(record.has_value());
  BOOST_TEST(record->pid == ::getpid());
  BOOST_TEST((record->mode == Mode::shared));
  BOOST_TEST(std::stoull(record->token, nullptr, 16) == static_cast<unsigned long long>(reader->lease()));
}

BOOST_FIXTURE_TEST_CASE(cluster_lock_holds_fences_and_says_busy, ClusterFixture) {
  ClusterOptions cluster;
  cluster.endpoints = server.endpoints();
  const ClusterLock lock = ClusterLock::open(cluster, "face");
  BOOST_TEST(lock.name() == "face");
  ClusterLockHold first = lock.acquire();
  BOOST_REQUIRE(first);
  BOOST_TEST(first.fencing_token() > 0);
  BOOST_TEST(first.key().rfind("face/", 0) == 0u);
  const ClusterLock other = ClusterLock::open(cluster, "face");
  std::error_code ec;
  BOOST_TEST(!other.try_acquire(Mode::exclusive, ec));
  BOOST_TEST((ec == errc::busy), ec.message());
  BOOST_TEST(!other.acquire(Mode::shared, 200ms, ec));
  BOOST_TEST((ec == errc::timeout), ec.message());
  try {
    other.try_acquire();
    BOOST_FAIL("try_acquire must throw");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == errc::busy));
  }
  const std::int64_t token = first.fencing_token();
  first.release();
  BOOST_TEST(!first);
  const ClusterLockHold second = other.acquire();
  BOOST_TEST(second.fencing_token() > token);
  BOOST_TEST(keys("face") == std::vector<std::string>{second.key()});
}

BOOST_FIXTURE_TEST_CASE(eight_processes_on_two_hosts_count_exactly_in_token_order,
                        ClusterFixture) {
  constexpr int kProcesses = 8;
  constexpr int kIncrements = 200;
  TempDir dir;
  const auto counter = dir / "counter";
  const auto log = dir / "log";
  write_file(counter, "0\n");
  std::vector<Process> workers;
  for (int i = 0; i < kProcesses; ++i) {
    // Each "host" is a UTS namespace of its own: the records name it.
    const std::string host = i % 2 == 0 ? "host-a" : "host-b";
    workers.push_back(Process({"unshare", "--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\"",
                               host, self_exe(), "--child", "cluster_counter",
                               server.endpoints_flag(), "counter", counter.string(),
                               log.string(), std::to_string(kIncrements)}));
  }
  for (Process& worker : workers) BOOST_TEST(worker.exit_code(300s) == kChildOk);
  BOOST_TEST(read_file(counter) == std::to_string(kProcesses * kIncrements) + "\n");
  // Appended under the lock, the tokens come in the order of the holds:
  // strictly increasing when no two holders ever overlapped.
  std::istringstream lines(read_file(log));
  std::int64_t last = 0;
  int count = 0, out_of_order = 0;
  std::set<std::string> hosts;
  for (std::string token, host; lines >> token >> host; ++count) {
    const std::int64_t now = std::stoll(token);
    if (now <= last) ++out_of_order;
    last = now;
    hosts.insert(host);
  }
  BOOST_TEST(count == kProcesses * kIncrements);
  BOOST_TEST(out_of_order == 0);
  BOOST_TEST(hosts == (std::set<std::string>{"host-a", "host-b"}), boost::test_tools::per_element());
}

// `packlock run --etcd`, as a user runs it: the local command, which hands
// the command line over to packlock-etcd.
// The ids of the leases etcd has now, from `etcdctl lease list`.
std::set<std::int64_t> leases_of(const EtcdServer& server) {
  Process list(server.etcdctl({"lease", "list"}));
  std::set<std::int64_t> ids;
  while (const auto line = list.read_line(20s)) {
    if (line->rfind("found ", 0) != 0) ids.insert(std::stoll(*line, nullptr, 16));
  }
  BOOST_REQUIRE(list.exit_code(20s) == 0);
  return ids;
}

// etcd's authentication on, with the user root and the password "right".
void enable_root_with_password(const EtcdServer& server) {
  for (const std::vector<std::string>& step :
       {std::vector<std::string>{"user", "add", "root:right", "--interactive=false"},
        std::vector<std::string>{"user", "grant-role", "root", "root"},
        std::vector<std::string>{"auth", "enable"}}) {
    Process etcdctl(server.etcdctl(step));
    BOOST_REQUIRE(etcdctl.exit_code(20s) == 0);
  }
}

ClusterOptions options_of(const EtcdServer& server) {
  ClusterOptions options;
  options.endpoints = server.endpoints();
  return options;
}

BOOST_FIXTURE_TEST_CASE(observe_shows_the_holder_then_the_waiters_in_line, ClusterFixture) {
  const auto holder = acquire(request("jobs/a"));
  Process etcdctl(server.etcdctl({"lock", "jobs/a", "true"}));
  BOOST_REQUIRE(eventually([&] { return keys("jobs/a").size() == 2; }));
  std::error_code reader_ec;
  std::jthread reader([&] {
    ClusterLockRequest r = request("jobs/a", Mode::shared);
    r.contend.deadline = std::chrono::steady_clock::now() + 20s;
    auto hold = ClusterHold::acquire(client, r, reader_ec);
  });
  BOOST_REQUIRE(eventually([&] { return keys("jobs/a").size() == 3; }));
  // Neither a key of another name nor one that is not a lock's is listed.
  const auto other = acquire(request("jobs/a/b", Mode::shared));
  Process put(server.etcdctl({"put", "jobs/a/694d", "not a lock"}));
  BOOST_REQUIRE(put.exit_code(20s) == 0);

  const ClusterLockView view = ClusterLock::open(options_of(server), "jobs/a").observe();
  BOOST_TEST(view.name == "jobs/a");
  BOOST_REQUIRE(view.holders.size() == 1u);
  BOOST_TEST(view.holders[0].key == holder->key());
  BOOST_TEST(view.holders[0].fencing_token == holder->fencing_token());
  BOOST_TEST(view.holders[0].lease == holder->lease());
  BOOST_REQUIRE(view.holders[0].owner.has_value());
  BOOST_TEST(view.holders[0].owner->pid == ::getpid());
  BOOST_REQUIRE(view.waiters.size() == 2u);
  // etcdctl's key has no record: it counts as exclusive.
  BOOST_TEST(!view.waiters[0].owner.has_value());
  BOOST_TEST((view.waiters[0].mode == Mode::exclusive));
  BOOST_TEST((view.waiters[1].mode == Mode::shared));
  BOOST_TEST(view.waiters[0].fencing_token < view.waiters[1].fencing_token);

  const std::vector<ClusterLockView> all = observe_cluster(options_of(server), "jobs/");
  BOOST_REQUIRE(all.size() == 2u);
  BOOST_TEST(all[0].name == "jobs/a");
  BOOST_TEST(all[0].waiters.size() == 2u);
  BOOST_TEST(all[1].name == "jobs/a/b");
  BOOST_TEST(all[1].holders.size() == 1u);
  BOOST_TEST(observe_cluster(options_of(server), "").size() == 2u);
  BOOST_TEST(observe_cluster(options_of(server), "nothing/").empty());
  BOOST_TEST(!holder->release());
  reader.join();
  BOOST_TEST(!reader_ec, reader_ec.message());
}

BOOST_FIXTURE_TEST_CASE(observe_shows_every_reader_that_shares_the_lock, ClusterFixture) {
  const auto first = acquire(request("db", Mode::shared));
  const auto second = acquire(request("db", Mode::shared));
  const ClusterLockView view = ClusterLock::open(options_of(server), "db").observe();
  BOOST_REQUIRE(view.holders.size() == 2u);
  BOOST_TEST(view.holders[0].key == first->key());
  BOOST_TEST(view.holders[1].key == second->key());
  BOOST_TEST(view.waiters.empty());
  BOOST_TEST(!first->release());
  BOOST_TEST(!second->release());
  BOOST_TEST(ClusterLock::open(options_of(server), "db").observe().holders.empty());
}

BOOST_FIXTURE_TEST_CASE(a_lock_granted_after_a_wait_says_when_it_was_granted, ClusterFixture) {
  auto holder = acquire(request("job"));
  ThreadWaiter waiter(*this, "job");
  BOOST_REQUIRE(waiter.blocked());
  const ClusterLock lock = ClusterLock::open(options_of(server), "job");
  BOOST_REQUIRE(lock.observe().waiters.size() == 1);
  const auto queued_at = lock.observe().waiters[0].owner.value().acquired_at;
  BOOST_TEST(!holder->release());
  waiter.thread.join();
  const auto& waiter_hold = waiter.hold;
  BOOST_REQUIRE_MESSAGE(waiter_hold, waiter.ec.message());
  // The record of its key is rewritten once granted, without delaying the grant.
  BOOST_TEST(eventually([&] {
    const ClusterLockView view = lock.observe();
    return view.holders.size() == 1 && view.holders[0].owner &&
           view.holders[0].owner->acquired_at > queued_at;
  }));
  BOOST_TEST(lock.observe().holders[0].fencing_token == waiter_hold->fencing_token());
}

BOOST_FIXTURE_TEST_CASE(async_acquire_is_granted_when_the_holder_releases, ClusterFixture) {
  const ClusterLock lock = ClusterLock::open(options_of(server), "job");
  auto holder = acquire(request("job"));
  asio::io_context io;
  Outcome<ClusterLockHold> outcome;
  lock.async_acquire(io.get_executor(), Mode::exclusive, record(outcome));
  BOOST_TEST(outcome.calls == 0);  // never inside the call
  // Its key is queued behind the holder's, and it stays queued.
  run_until(io, [&] { return keys("job").size() == 2; });
  io.restart();
  io.run_for(50ms);
  BOOST_TEST(outcome.calls == 0);
  BOOST_TEST(!holder->release());
  run_until(io, [&] { return outcome.calls == 1; });
  BOOST_TEST(!outcome.ec, outcome.ec.message());
  BOOST_TEST(outcome.value.fencing_token() > holder->fencing_token());
  BOOST_TEST(keys("job") == std::vector<std::string>{outcome.value.key()});
  outcome.value.release();
  BOOST_TEST(keys("job").empty());
}

BOOST_FIXTURE_TEST_CASE(async_acquire_of_a_free_lock_works_with_any_token, ClusterFixture) {
  const ClusterLock lock = ClusterLock::open(options_of(server), "job");
  asio::io_context io;
  auto future = lock.async_acquire(io.get_executor(), Mode::shared, asio::use_future);
  run_until(io, [&] { return future.wait_for(0s) == std::future_status::ready; });
  ClusterLockHold hold = future.get();
  BOOST_TEST(hold.fencing_token() > 0);
  BOOST_TEST(keys("job") == std::vector<std::string>{hold.key()});
}

BOOST_FIXTURE_TEST_CASE(a_cancelled_async_acquire_leaves_no_key_when_its_handler_runs,
                        ClusterFixture) {
  const ClusterLock lock = ClusterLock::open(options_of(server), "job");
  auto holder = acquire(request("job"));
  asio::io_context io;
  asio::cancellation_signal signal;
  int calls = 0;
  std::error_code ec;
  std::vector<std::string> keys_at_handler;
  lock.async_acquire(io.get_executor(), Mode::exclusive,
                     asio::bind_cancellation_slot(signal.slot(), [&](std::error_code e, ClusterLockHold) {
                       ++calls;
                       ec = e;
                       keys_at_handler = keys("job");
                     }));
  run_until(io, [&] { return keys("job").size() == 2; });
  signal.emit(asio::cancellation_type::terminal);
  run_until(io, [&] { return calls == 1; });
  BOOST_TEST((ec == errc::cancelled), ec.message());
  BOOST_TEST(keys_at_handler == std::vector<std::string>{holder->key()});
}

BOOST_FIXTURE_TEST_CASE(an_async_acquire_times_out_and_leaves_no_key, ClusterFixture) {
  const ClusterLock lock = ClusterLock::open(options_of(server), "job");
  auto holder = acquire(request("job"));
  asio::io_context io;
  int calls = 0;
  std::error_code ec;
  std::vector<std::string> keys_at_handler;
  lock.async_acquire(io.get_executor(), Mode::exclusive, 300ms, [&](std::error_code e, ClusterLockHold) {
    ++calls;
    ec = e;
    keys_at_handler = keys("job");
  });
  run_until(io, [&] { return calls == 1; });
  BOOST_TEST((ec == errc::timeout), ec.message());
  BOOST_TEST(keys_at_handler == std::vector<std::string>{holder->key()});
}

BOOST_FIXTURE_TEST_CASE(async_waiters_are_served_in_line, ClusterFixture) {
  const ClusterLock lock = ClusterLock::open(options_of(server), "job");
  auto holder = acquire(request("job"));
  asio::io_context io;
  std::vector<std::int64_t> granted;
  std::vector<ClusterLockHold> holds(3);
  for (int i = 0; i < 3; ++i) {
    lock.async_acquire(io.get_executor(), Mode::exclusive, [&, i](std::error_code e, ClusterLockHold hold) {
      BOOST_TEST(!e, e.message());
      granted.push_back(i);
      holds[static_cast<std::size_t>(i)] = std::move(hold);
    });
    run_until(io, [&] { return keys("job").size() == static_cast<std::size_t>(i) + 2; });
  }
  BOOST_TEST(!holder->release());
  // One at a time, each released as soon as it is granted.
  for (std::size_t served = 1; served <= 3; ++served) {
    run_until(io, [&] { return granted.size() == served; });
    holds[static_cast<std::size_t>(granted.back())].release();
  }
  BOOST_TEST((granted == std::vector<std::int64_t>{0, 1, 2}));
  BOOST_TEST(keys("job").empty());
}

// Starts an acquisition of the held "job" on a context of its own, runs
// the context as `advance` says, then destroys it: the operation must end
// without its handler, its key and lease gone.
void abandon_after(ClusterFixture& fixture, const std::function<void(asio::io_context&)>& advance) {
  auto holder = fixture.acquire(ClusterFixture::request("job"));
  int calls = 0;
  {
    const ClusterLock lock = ClusterLock::open(options_of(fixture.server), "job");
    asio::io_context io;
    lock.async_acquire(io.get_executor(), Mode::exclusive,
                       [&](std::error_code, ClusterLockHold) { ++calls; });
    advance(io);
  }
  BOOST_TEST(calls == 0);
  BOOST_TEST(fixture.keys("job") == std::vector<std::string>{holder->key()});
}

BOOST_FIXTURE_TEST_CASE(a_context_destroyed_mid_wait_revokes_the_waiter_s_lease, ClusterFixture) {
  abandon_after(*this, [&](asio::io_context& io) {
    run_until(io, [&] { return keys("job").size() == 2; });
  });
}

BOOST_FIXTURE_TEST_CASE(a_context_destroyed_with_a_run_still_posted_ends_the_operation,
                        ClusterFixture) {
  abandon_after(*this, [&](asio::io_context& io) {
    // The first step asks for a lease; its answer posts the next step,
    // which never runs.
    BOOST_REQUIRE(io.poll() == 1);
    BOOST_REQUIRE(eventually([&] { return leases_of(server).size() == 2; }));
  });
}

BOOST_FIXTURE_TEST_CASE(a_steal_robs_the_holder_who_is_told_and_requeues_the_waiters,
                        ClusterFixture) {
  auto holder = acquire(request("job"));
  LossWatch loss;
  loss.watch(*holder);
  ThreadWaiter waiter(*this, "job");
  BOOST_REQUIRE(waiter.blocked());
  const std::string waiter_key = keys("job").back();

  ClusterLockHold stolen = ClusterLock::open(options_of(server), "job").steal();
  BOOST_TEST(stolen.fencing_token() > holder->fencing_token());
  BOOST_TEST(loss.wait());
  // The waiter queued again, behind the stealer, with the same lease.
  BOOST_REQUIRE(eventually([&] { return keys("job").size() == 2; }));
  BOOST_TEST(keys("job") == (std::vector<std::string>{stolen.key(), waiter_key}));
  BOOST_TEST(!waiter.hold);
  stolen.release();
  waiter.thread.join();
  BOOST_REQUIRE_MESSAGE(waiter.hold, waiter.ec.message());
  BOOST_TEST(waiter.hold->fencing_token() > stolen.fencing_token());
  BOOST_TEST((holder->release() == errc::hijacked));
}

BOOST_FIXTURE_TEST_CASE(a_lock_and_one_of_a_longer_name_under_it_are_independent,
                        ClusterFixture) {
  // Run names a lock after its pack's path: nested packs lock apart.
  auto child = acquire(request("srv/a/b"));
  LossWatch loss;
  loss.watch(*child);
  const ClusterLock parent = ClusterLock::open(options_of(server), "srv/a");
  std::error_code ec;
  ClusterLockHold held = parent.try_acquire(Mode::exclusive, ec);
  BOOST_TEST(!ec, ec.message());
  held.release();
  // A steal of the parent leaves the child's key alone.
  ClusterLockHold stolen = parent.steal(ec);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(keys("srv/a/b") == std::vector<std::string>{child->key()});
  stolen.release();
  BOOST_TEST(!child->lost());
  BOOST_TEST(!child->release());
}

BOOST_FIXTURE_TEST_CASE(a_steal_leaves_an_etcdctl_holder_alone, ClusterFixture) {
  Process etcdctl(server.etcdctl({"lock", "job"}));
  const auto etcdctl_key = etcdctl.read_line(20s);
  BOOST_REQUIRE(etcdctl_key.has_value());
  std::error_code ec;
  const ClusterLockHold hold = ClusterLock::open(options_of(server), "job").steal(ec);
  BOOST_TEST(!hold);
  BOOST_TEST((ec == errc::busy), ec.message());
  BOOST_TEST(keys("job") == std::vector<std::string>{*etcdctl_key});
  etcdctl.kill(SIGTERM);
  etcdctl.wait(20s);
}

BOOST_FIXTURE_TEST_CASE(a_released_lease_serves_the_next_hold_and_goes_with_its_client,
                        ClusterFixture) {
  auto own = connect();
  std::error_code ec;
  auto first = ClusterHold::acquire(own, request("job"), ec);
  BOOST_REQUIRE_MESSAGE(first, ec.message());
  const std::int64_t lease = first->lease();
  BOOST_TEST(!first->release());
  // The lock is free: the key went; its lease stays for the next hold.
  BOOST_TEST(keys("job").empty());
  BOOST_TEST(leases_of(server).count(lease) == 1u);
  auto second = ClusterHold::acquire(own, request("other"), ec);
  BOOST_REQUIRE_MESSAGE(second, ec.message());
  BOOST_TEST(second->lease() == lease);
  BOOST_TEST(second->fencing_token() > first->fencing_token());
  BOOST_TEST(!second->release());
  first.reset();
  second.reset();
  own.reset();  // the client goes, and revokes its spare leases
  BOOST_TEST(leases_of(server).empty());
}

BOOST_FIXTURE_TEST_CASE(a_lost_hold_does_not_pass_its_lease_on, ClusterFixture) {
  auto own = connect();
  std::error_code ec;
  auto hold = ClusterHold::acquire(own, request("job"), ec);
  BOOST_REQUIRE_MESSAGE(hold, ec.message());
  Process del(server.etcdctl({"del", hold->key()}));
  BOOST_REQUIRE(del.exit_code(20s) == 0);
  BOOST_TEST((hold->release() == errc::hijacked));
  BOOST_TEST(leases_of(server).empty());
}

struct CommandFixture : ClusterFixture {
  TempDir dir;
  const std::string cli = command();

  static std::string command() {
    const char* cli = std::getenv("PACKLOCK_CLI");
    BOOST_REQUIRE_MESSAGE(cli, "PACKLOCK_CLI names the packlock command");
    return cli;
  }

  Process run(std::vector<std::string> options, std::vector<std::string> command) const {
    std::vector<std::string> argv{"sh", "-c", "exec \"$@\" 2>&1", "sh", cli, "run",
                                  "--etcd", server.endpoints_flag()};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back((dir / "pack").string());
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    return Process(argv);
  }

  // `packlock probe` or `status` --etcd of this server, stderr with stdout.
  Process probe_or_status(const std::string& subcommand, std::vector<std::string> args) const {
    std::vector<std::string> argv{"sh", "-c", "exec \"$@\" 2>&1", "sh", cli, subcommand,
                                  "--etcd", server.endpoints_flag()};
    argv.insert(argv.end(), args.begin(), args.end());
    return Process(argv);
  }

  static std::string all_lines(Process& process) {
    std::string text;
    while (const auto line = process.read_line(20s)) text += *line + "\n";
    return text;
  }
};

BOOST_FIXTURE_TEST_CASE(probe_etcd_says_who_holds_and_who_waits, CommandFixture) {
  const auto holder = acquire(request("jobs/a"));
  Process etcdctl(server.etcdctl({"lock", "jobs/a", "true"}));
  BOOST_REQUIRE(eventually([&] { return keys("jobs/a").size() == 2; }));

  Process text(probe_or_status("probe", {"jobs/a", "jobs/free"}));
  const std::string said = text.read_line(20s).value_or("");
  BOOST_TEST(said.find("jobs/a: held exclusive by " + std::to_string(::getpid())) == 0u, said);
  BOOST_TEST(said.find("fencing token " + std::to_string(holder->fencing_token())) !=
                 std::string::npos, said);
  BOOST_TEST(said.find("; 1 waiting") != std::string::npos, said);
  BOOST_TEST(text.read_line(20s).value_or("") == "jobs/free: free");
  BOOST_TEST(text.exit_code(20s) == 1);  // some held

  Process json(probe_or_status("probe", {"--json", "jobs/a"}));
  const auto parsed = nlohmann::json::parse(all_lines(json));
  BOOST_TEST(json.exit_code(20s) == 1);
  BOOST_REQUIRE(parsed.size() == 1u);
  BOOST_TEST(parsed[0]["state"] == "held");
  BOOST_TEST(parsed[0]["holders"][0]["key"] == holder->key());
  BOOST_TEST(parsed[0]["holders"][0]["fencing_token"] == holder->fencing_token());
  BOOST_TEST(parsed[0]["holders"][0]["owner"]["pid"] == ::getpid());
  BOOST_TEST(parsed[0]["waiters"].size() == 1u);
  BOOST_TEST(parsed[0]["waiters"][0]["owner"].is_null());  // etcdctl's

  BOOST_TEST(!holder->release());
  BOOST_TEST(etcdctl.exit_code(20s) == 0);
  Process free(probe_or_status("probe", {"jobs/a"}));
  BOOST_TEST(free.read_line(20s).value_or("") == "jobs/a: free");
  BOOST_TEST(free.exit_code(20s) == 0);
}

BOOST_FIXTURE_TEST_CASE(status_etcd_lists_the_locks_under_a_prefix, CommandFixture) {
  const auto a = acquire(request("ci/a"));
  const auto b = acquire(request("ci/b", Mode::shared));
  const auto elsewhere = acquire(request("other"));
  Process table(probe_or_status("status", {"ci/"}));
  const auto header = table.read_line(20s).value_or("");
  BOOST_TEST(header.find("NAME") == 0u, header);
  BOOST_TEST(header.find("TOKEN") != std::string::npos, header);
  const auto first = table.read_line(20s).value_or("");
  BOOST_TEST(first.find("ci/a") == 0u, first);
  BOOST_TEST(first.find(std::to_string(a->fencing_token())) != std::string::npos, first);
  BOOST_TEST(table.read_line(20s).value_or("").find("ci/b") == 0u);
  BOOST_TEST(!table.read_line(20s).has_value());  // "other" is not under ci/
  BOOST_TEST(table.exit_code(20s) == 0);

  Process json(probe_or_status("status", {"--json"}));
  const auto parsed = nlohmann::json::parse(all_lines(json));
  BOOST_TEST(json.exit_code(20s) == 0);
  BOOST_REQUIRE(parsed.size() == 3u);
  BOOST_TEST(parsed[1]["name"] == "ci/b");
  BOOST_TEST(parsed[1]["mode"] == "shared");
  BOOST_TEST(parsed[2]["name"] == "other");
}

BOOST_FIXTURE_TEST_CASE(probe_and_status_etcd_refuse_what_only_packs_have, CommandFixture) {
  for (const auto& [subcommand, option] :
       std::vector<std::pair<std::string, std::string>>{{"probe", "--try"},
                                                        {"probe", "--missing-ok"},
                                                        {"status", "--max-depth=1"}}) {
    Process refused(probe_or_status(subcommand, {option, "x"}));
    const auto said = refused.read_line(20s).value_or("");
    BOOST_TEST(said.find(option.substr(0, option.find('='))) != std::string::npos, said);
    BOOST_TEST(refused.exit_code(20s) == 64);
  }
}

BOOST_FIXTURE_TEST_CASE(probe_etcd_names_endpoints_that_do_not_answer, CommandFixture) {
  const std::string nowhere = "127.0.0.1:" + std::to_string(free_loopback_port());
  for (const std::string subcommand : {"probe", "status"}) {
    Process probe({"sh", "-c", "exec \"$@\" 2>&1", "sh", cli, subcommand, "--etcd", nowhere,
                   "--dial-timeout", "300ms", "job"});
    const auto said = probe.read_line(20s).value_or("");
    BOOST_TEST(said.find(nowhere) != std::string::npos, said);
    BOOST_TEST(said.find("no etcd endpoint answered") != std::string::npos, said);
    BOOST_TEST(!probe.read_line(20s).has_value());  // one line
    BOOST_TEST(probe.exit_code(20s) == 69);
  }
}

BOOST_FIXTURE_TEST_CASE(run_etcd_gives_the_command_its_fencing_token, CommandFixture) {
  Process first = run({"--key", "job"}, {"sh", "-c", "echo $PACKLOCK_FENCING_TOKEN $PACKLOCK_ETCD_KEY"});
  const auto line = first.read_line(20s);
  BOOST_REQUIRE(line.has_value());
  BOOST_TEST(first.exit_code(20s) == 0);
  const auto space = line->find(' ');
  BOOST_REQUIRE(space != std::string::npos);
  BOOST_TEST(std::stoll(line->substr(0, space)) > 0);
  BOOST_TEST(line->substr(space + 1).rfind("job/", 0) == 0u);
  // Released: the next run's token is higher.
  Process second = run({"--key", "job"}, {"sh", "-c", "echo $PACKLOCK_FENCING_TOKEN"});
  const auto next = second.read_line(20s);
  BOOST_REQUIRE(next.has_value());
  BOOST_TEST(std::stoll(*next) > std::stoll(line->substr(0, space)));
  BOOST_TEST(second.exit_code(20s) == 0);
  BOOST_TEST(keys("job").empty());
}

BOOST_FIXTURE_TEST_CASE(run_etcd_is_kept_out_by_an_etcdctl_holder, CommandFixture) {
  Process etcdctl(server.etcdctl({"lock", "job"}));
  BOOST_REQUIRE(etcdctl.read_line(20s).has_value());
  Process busy = run({"--key", "job", "-n"}, {"true"});
  const auto said = busy.read_line(20s);
  BOOST_TEST(busy.exit_code(20s) == 75);
  BOOST_REQUIRE(said.has_value());
  BOOST_TEST(said->find("cluster lock job") != std::string::npos, *said);
  // The local lock was let go as well.
  BOOST_TEST(flock_nonblocking(dir / "pack" / ".grex-lock") == 0);
}

BOOST_FIXTURE_TEST_CASE(run_etcd_waiting_for_the_cluster_ends_on_sigterm, CommandFixture) {
  Process etcdctl(server.etcdctl({"lock", "job"}));
  BOOST_REQUIRE(etcdctl.read_line(20s).has_value());
  Process waiter = run({"--key", "job"}, {"true"});
  // It holds the pack and waits in etcd behind etcdctl's key.
  BOOST_REQUIRE(eventually([&] { return keys("job").size() == 2; }));
  waiter.kill(SIGTERM);
  BOOST_TEST(waiter.exit_code(20s) == 128 + SIGTERM);
  // Its key went with its lease, and the pack is free again.
  BOOST_TEST(keys("job").size() == 1u);
  BOOST_TEST(flock_nonblocking(dir / "pack" / ".grex-lock") == 0);
}

BOOST_FIXTURE_TEST_CASE(run_etcd_sends_sigterm_when_its_key_is_deleted, CommandFixture) {
  Process holder = run({"--key", "job"}, {"sh", "-c", "echo started; exec sleep 60"});
  BOOST_REQUIRE(holder.read_line(20s) == std::optional<std::string>("started"));
  const auto held = keys("job");
  BOOST_REQUIRE(held.size() == 1u);
  Process del(server.etcdctl({"del", held.front()}));
  BOOST_TEST(del.exit_code(20s) == 0);
  const auto said = holder.read_line(20s);
  BOOST_REQUIRE(said.has_value());
  BOOST_TEST(said->find("cluster lock lost") != std::string::npos, *said);
  BOOST_TEST(holder.exit_code(20s) == 128 + SIGTERM);
}

BOOST_FIXTURE_TEST_CASE(a_holder_stopped_past_its_ttl_loses_to_a_higher_token, CommandFixture) {
  // "Host" A: its own pack, a lease of 2 s renewed every 500 ms.
  Process a = run({"--key", "job", "--stale-after", "2s", "--heartbeat", "500ms"},
                  {"sh", "-c", "echo $PACKLOCK_FENCING_TOKEN; exec sleep 60"});
  const auto a_token = a.read_line(20s);
  BOOST_REQUIRE(a_token.has_value());
  a.stop();  // packlock itself, not its command: no more renewals
  // "Host" B, with a pack of its own, gets the lock once A's lease expired.
  TempDir b_dir;
  Process b({"sh", "-c", "exec \"$@\" 2>&1", "sh", cli, "run", "--etcd", server.endpoints_flag(),
             "--key", "job", "-w", "30s", (b_dir / "pack").string(), "--", "sh", "-c",
             "echo $PACKLOCK_FENCING_TOKEN"});
  const auto b_token = b.read_line(30s);
  BOOST_REQUIRE(b_token.has_value());
  BOOST_TEST(b.exit_code(20s) == 0);
  BOOST_TEST(std::stoll(*b_token) > std::stoll(*a_token));
  // A, continued, finds its lock lost and ends its command.
  a.kill(SIGCONT);
  const auto said = a.read_line(20s);
  BOOST_REQUIRE(said.has_value());
  BOOST_TEST(said->find("cluster lock lost") != std::string::npos, *said);
  BOOST_TEST(a.exit_code(20s) == 128 + SIGTERM);
}

BOOST_FIXTURE_TEST_CASE(run_etcd_says_which_endpoints_do_not_answer, CommandFixture) {
  const std::string nobody = "127.0.0.1:" + std::to_string(free_loopback_port());
  Process run_it({"sh", "-c", "exec \"$@\" 2>&1", "sh", cli, "run", "--etcd", nobody,
                  "--dial-timeout", "300ms", (dir / "pack").string(), "--", "true"});
  const auto said = run_it.read_line(20s);
  BOOST_TEST(run_it.exit_code(20s) == 69);
  BOOST_REQUIRE(said.has_value());
  BOOST_TEST(said->find(nobody) != std::string::npos, *said);
  BOOST_TEST(said->find("no etcd endpoint answered") != std::string::npos, *said);
}

BOOST_FIXTURE_TEST_CASE(run_etcd_with_a_wrong_password_exits_77, CommandFixture) {
  enable_root_with_password(server);
  Process wrong = run({"--key", "job", "--user", "root:wrong"}, {"true"});
  const auto said = wrong.read_line(20s);
  BOOST_TEST(wrong.exit_code(20s) == 77);
  BOOST_REQUIRE(said.has_value());
  BOOST_TEST(said->find("refused") != std::string::npos, *said);
  Process nobody = run({"--key", "job"}, {"true"});
  BOOST_TEST(nobody.exit_code(20s) == 77);
  Process right = run({"--key", "job", "--user", "root:right"}, {"true"});
  BOOST_TEST(right.exit_code(20s) == 0);
}

// etcd forgets a simple token not used for its TTL (here 1 s); a hold
// whose only traffic is its lease's keep-alive stream outlives it.
BOOST_AUTO_TEST_CASE(a_hold_outlives_its_auth_token) {
  EtcdServer server(1, std::nullopt, {"--auth-token", "simple", "--auth-token-ttl", "1"});
  enable_root_with_password(server);
  ClusterOptions options = options_of(server);
  options.user = "root";
  options.password = "right";
  options.token_refresh = 300ms;
  LockOptions lock_options;
  lock_options.heartbeat = 100ms;
  lock_options.stale_after = 10s;
  const ClusterLock lock = ClusterLock::open(options, "job", lock_options);
  ClusterLockHold hold = lock.acquire();
  // The premise: time passing, three TTLs of the first token.
  std::this_thread::sleep_for(3s);
  std::error_code ec;
  hold.release(ec);
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(lock.observe().holders.empty());
}

BOOST_AUTO_TEST_CASE(run_etcd_refuses_a_server_its_ca_did_not_sign_with_77) {
  TempDir certs;
  const EtcdTls tls = make_tls_files(certs.path(), "server");
  const EtcdTls other = make_tls_files(certs.path(), "other");
  EtcdServer server(1, tls);
  const std::string cli = CommandFixture::command();
  TempDir dir;
  const auto run_with_ca = [&](const fs::path& ca) {
    return Process({"sh", "-c", "exec \"$@\" 2>&1", "sh", cli, "run", "--etcd",
                    "https://" + server.endpoints()[0], "--cacert", ca.string(), "--key", "job",
                    "--dial-timeout", "2s", (dir / "pack").string(), "--", "true"});
  };
  Process trusted = run_with_ca(tls.ca);
  BOOST_TEST(trusted.exit_code(30s) == 0);
  Process untrusted = run_with_ca(other.ca);
  const auto said = untrusted.read_line(30s);
  BOOST_TEST(untrusted.exit_code(30s) == 77);
  BOOST_REQUIRE(said.has_value());
  BOOST_TEST(said->find("refused") != std::string::npos, *said);
}

BOOST_AUTO_TEST_CASE(cluster_options_come_from_the_environment) {
  ::setenv("PACKLOCK_ETCD_ENDPOINTS", "127.0.0.1:1,,https://etcd.example:2379", 1);
  ::setenv("ETCDCTL_ENDPOINTS", "127.0.0.1:9", 1);
  ::setenv("ETCDCTL_USER", "ops:secret", 1);
  ::setenv("ETCDCTL_CACERT", "/etc/ca.pem", 1);
  const ClusterOptions options = ClusterOptions::from_environment();
  ::unsetenv("PACKLOCK_ETCD_ENDPOINTS");
  ::unsetenv("ETCDCTL_ENDPOINTS");
  ::unsetenv("ETCDCTL_USER");
  ::unsetenv("ETCDCTL_CACERT");
  BOOST_TEST(options.endpoints ==
                 (std::vector<std::string>{"127.0.0.1:1", "https://etcd.example:2379"}),
             boost::test_tools::per_element());
  BOOST_TEST(options.user == "ops");
  BOOST_TEST(options.password == "secret");
  BOOST_TEST(options.cacert == "/etc/ca.pem");
}

BOOST_AUTO_TEST_CASE(cluster_lock_open_names_unreachable_endpoints) {
  ClusterOptions cluster;
  cluster.endpoints = {"127.0.0.1:" + std::to_string(free_loopback_port())};
  cluster.dial_timeout = 300ms;
  try {
    ClusterLock::open(cluster, "x");
    BOOST_FAIL("open must throw");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == errc::cluster_unavailable));
    BOOST_TEST((e.code() == std::errc::host_unreachable));
  }
}

BOOST_AUTO_TEST_CASE(a_hold_survives_the_loss_of_the_member_it_spoke_to_and_still_sees_its_key_go) {
  EtcdServer server(3);
  detail::EtcdSettings settings;
  settings.endpoints = server.endpoints();  // the channel speaks to the first
  std::error_code ec;
  const std::shared_ptr<const detail::EtcdClient> client = detail::EtcdClient::connect(settings, ec);
  BOOST_REQUIRE_MESSAGE(client, ec.message());
  ClusterLockRequest r = ClusterFixture::request("job");
  r.ttl = 5s;
  r.heartbeat = 500ms;
  const auto hold = ClusterHold::acquire(client, r, ec);
  BOOST_REQUIRE_MESSAGE(hold, ec.message());
  // Renewed once: its keep-alive stream runs through the first member.
  BOOST_REQUIRE(eventually([&] { return client->lease_keeper().last_answer(hold->lease()).has_value(); }));
  server.kill_member(0);
  // Seen through the members left: the key outlives two TTLs.
  settings.endpoints = {server.endpoints()[1], server.endpoints()[2]};
  const auto survivors = detail::EtcdClient::connect(settings, ec);
  BOOST_REQUIRE_MESSAGE(survivors, ec.message());
  const auto until = std::chrono::steady_clock::now() + 2 * hold->ttl();
  int seen = 0;
  while (std::chrono::steady_clock::now() < until) {
    etcdserverpb::RangeRequest range;
    range.set_key(hold->key());
    etcdserverpb::RangeResponse response;
    // An election may be under way: a failed read is not a missing key.
    if (!detail::call(*survivors, survivors->kv(), &etcdserverpb::KV::Stub::Range, range, response)) {
      BOOST_REQUIRE_EQUAL(response.kvs_size(), 1);
      ++seen;
    }
    std::this_thread::sleep_for(200ms);
  }
  BOOST_TEST(seen > 0);
  BOOST_TEST(!hold->lost());
  // The watch of its key ran through the first member too: it is made
  // again, so a deletion through another member is still seen.
  LossWatch loss;
  loss.watch(*hold);
  etcdserverpb::DeleteRangeRequest remove;
  remove.set_key(hold->key());
  etcdserverpb::DeleteRangeResponse removed;
  BOOST_REQUIRE(eventually([&] {
    return !detail::call(*survivors, survivors->kv(), &etcdserverpb::KV::Stub::DeleteRange, remove, removed);
  }));
  BOOST_TEST(removed.deleted() == 1);
  BOOST_TEST(loss.wait());
  BOOST_TEST((hold->release() == errc::hijacked));
}

BOOST_AUTO_TEST_CASE(unreachable_endpoints_fail_within_the_dial_timeout) {
  detail::EtcdSettings settings;
  settings.endpoints = {"127.0.0.1:" + std::to_string(free_loopback_port())};
  settings.dial_timeout = 300ms;
  std::error_code ec;
  const auto started = std::chrono::steady_clock::now();
  BOOST_TEST(!detail::EtcdClient::connect(settings, ec));
  BOOST_TEST((ec == errc::cluster_unavailable), ec.message());
  // A safety limit, not a measurement: the dial timeout bounds the wait.
  BOOST_TEST((std::chrono::steady_clock::now() - started < 10s));
}

BOOST_AUTO_TEST_SUITE_END()
