// The cluster figures, against a one-member etcd started for them on
// loopback (Debian's etcd-server):
//
//   cluster_uncontended   ClusterLock acquire + release; baseline: a bare
//                         Put + Delete round trip on the same connection;
//   cluster_run_true      `packlock run --etcd E --key K PACK -- true`;
//                         baseline: `etcdctl lock K true`, interleaved;
//   cluster_handoff_p50   a holder's release until the next holder (in
//                         another thread) is granted; baseline: etcd's own
//                         watch notification of a Delete, from the call.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <packlock/packlock.hpp>

#include "etcd_client.hpp"
#include "figure.hpp"
#include "loopback_port.hpp"
#include "scratch.hpp"

extern char** environ;

namespace packlock::bench {
namespace {

constexpr int kUncontendedRounds = 200;
constexpr int kRunRounds = 20;
constexpr int kHandoffRounds = 60;

pid_t spawn(const std::vector<std::string>& argv, const std::string& output) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ::posix_spawn_file_actions_addopen(&actions, 2, output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_t pid = 0;
  const int err = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (err != 0) throw std::runtime_error("cannot start " + argv[0]);
  return pid;
}

double time_run(const std::vector<std::string>& argv) {
  const double start = now_ns();
  const pid_t pid = spawn(argv, "/dev/null");
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(argv[0] + " failed with status " + std::to_string(status));
  }
  return now_ns() - start;
}

// A one-member etcd in `dir`, ready when constructed, stopped by its pid.
class LocalEtcd {
 public:
  explicit LocalEtcd(const std::filesystem::path& dir)
      : endpoint_("127.0.0.1:" + std::to_string(test::free_loopback_port())) {
    const std::string peer = "http://127.0.0.1:" + std::to_string(test::free_loopback_port());
    const std::string client = "http://" + endpoint_;
    pid_ = spawn({"etcd", "--name", "bench", "--data-dir", (dir / "etcd").string(),
                  "--listen-client-urls", client, "--advertise-client-urls", client,
                  "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                  "--initial-cluster", "bench=" + peer},
                 (dir / "etcd.log").string());
    detail::EtcdSettings settings;
    settings.endpoints = {endpoint_};
    settings.dial_timeout = std::chrono::seconds(20);
    std::error_code ec;
    client_ = detail::EtcdClient::connect(settings, ec);
    if (!client_) throw std::runtime_error("etcd did not start: " + ec.message());
    for (int i = 0; !put("ready"); ++i) {
      if (i == 1000) throw std::runtime_error("etcd has no leader");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~LocalEtcd() {
    client_.reset();
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  LocalEtcd(const LocalEtcd&) = delete;
  LocalEtcd& operator=(const LocalEtcd&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  const detail::EtcdClient& client() const { return *client_; }

  bool put(const std::string& key) const {
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value("x");
    etcdserverpb::PutResponse response;
    return !detail::call(*client_, client_->kv(), &etcdserverpb::KV::Stub::Put, request, response);
  }
  bool remove(const std::string& key) const {
    etcdserverpb::DeleteRangeRequest request;
    request.set_key(key);
    etcdserverpb::DeleteRangeResponse response;
    return !detail::call(*client_, client_->kv(), &etcdserverpb::KV::Stub::DeleteRange, request,
                         response);
  }

 private:
  std::string endpoint_;
  pid_t pid_ = -1;
  std::shared_ptr<detail::EtcdClient> client_;
};

Figure uncontended_figure(const LocalEtcd& etcd, const ClusterLock& lock) {
  std::vector<double> ours, bare;
  for (int i = 0; i < kUncontendedRounds; ++i) {
    double start = now_ns();
    ClusterLockHold hold = lock.acquire();
    hold.release();
    ours.push_back(now_ns() - start);
    start = now_ns();
    if (!etcd.put("bare") || !etcd.remove("bare")) throw std::runtime_error("put/delete failed");
    bare.push_back(now_ns() - start);
  }
  Figure figure{"cluster_uncontended", median(ours) / 1e3, "us", median(bare) / 1e3,
                "ratio <= 1.5 to Put + Delete"};
  figure.ok = figure.ratio() <= 1.5;
  figure.note = "medians of " + std::to_string(kUncontendedRounds) +
                " interleaved rounds; acquire is one Txn (put, the key before) with the lease the "
                "last release kept, and a watch of its own key; release is DeleteRange";
  return figure;
}

Figure run_true_figure(const LocalEtcd& etcd, const std::filesystem::path& pack) {
  const std::vector<std::string> ours{PACKLOCK_CLI_PATH, "run", "--etcd", etcd.endpoint(), "--key",
                                      "run-true", pack.string(), "--", "true"};
  const std::vector<std::string> etcdctl{"etcdctl", "--endpoints=" + etcd.endpoint(), "lock",
                                         "run-true", "true"};
  time_run(ours);
  std::vector<double> packlock_times, etcdctl_times;
  for (int i = 0; i < kRunRounds; ++i) {
    packlock_times.push_back(time_run(ours));
    etcdctl_times.push_back(time_run(etcdctl));
  }
  Figure figure{"cluster_run_true", median(packlock_times) / 1e6, "ms",
                median(etcdctl_times) / 1e6, "ratio <= 1 to etcdctl lock"};
  figure.ok = figure.ratio() <= 1;
  figure.note = "medians of " + std::to_string(kRunRounds) +
                " interleaved runs; packlock hands over to packlock-etcd";
  return figure;
}

// From the holder's release to the waiter's grant, in another thread.
double one_handoff(const ClusterLock& lock) {
  ClusterLockHold held = lock.acquire();
  std::mutex mutex;
  std::condition_variable changed;
  bool waiting = false;
  double granted_at = 0;
  std::thread waiter([&] {
    {
      std::lock_guard guard(mutex);
      waiting = true;
      changed.notify_all();
    }
    ClusterLockHold next = lock.acquire();
    granted_at = now_ns();
  });
  {
    std::unique_lock guard(mutex);
    changed.wait(guard, [&] { return waiting; });
  }
  // The waiter has put its key and watches ours: give it the time to.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double released_at = now_ns();
  held.release();
  waiter.join();
  return granted_at - released_at;
}

// From the Delete call until the watch of the key says it is gone.
double one_notification(const LocalEtcd& etcd) {
  if (!etcd.put("watched")) throw std::runtime_error("put failed");
  std::mutex mutex;
  std::condition_variable ended;
  bool deleted = false;
  double notified_at = 0;
  const auto watch = detail::KeyDeletion::watch(etcd.client(), "watched", 0, [&](std::error_code) {
    std::lock_guard guard(mutex);
    notified_at = now_ns();
    deleted = true;
    ended.notify_all();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the watch is set up
  const double deleted_at = now_ns();
  if (!etcd.remove("watched")) throw std::runtime_error("delete failed");
  std::unique_lock guard(mutex);
  ended.wait(guard, [&] { return deleted; });
  return notified_at - deleted_at;
}

Figure handoff_figure(const LocalEtcd& etcd, const ClusterLock& lock) {
  std::vector<double> ours, watch;
  for (int i = 0; i < kHandoffRounds; ++i) {
    ours.push_back(one_handoff(lock));
    watch.push_back(one_notification(etcd));
  }
  Figure figure{"cluster_handoff_p50", median(ours) / 1e3, "us", median(watch) / 1e3,
                "ratio <= 1.5 to a watch of a Delete"};
  figure.ok = figure.ratio() <= 1.5;
  figure.note = std::to_string(kHandoffRounds) +
                " interleaved rounds, both from the call that deletes; ours: DeleteRange and "
                "the watch event of the name's keys, which the waiter first in line watches";
  return figure;
}

}  // namespace

void cluster(std::vector<Figure>& figures) {
  ScratchDir scratch;
  const LocalEtcd etcd(scratch.path());
  ClusterOptions options;
  options.endpoints = {etcd.endpoint()};
  const ClusterLock lock = ClusterLock::open(options, "bench");
  figures.push_back(uncontended_figure(etcd, lock));
  figures.push_back(run_true_figure(etcd, scratch.path() / "pack"));
  figures.push_back(handoff_figure(etcd, lock));
}

}  // namespace packlock::bench
