#include "etcd_server.hpp"

#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "etcd_client.hpp"

namespace packlock::test {

EtcdTls make_tls_files(const fs::path& dir, const std::string& name) {
  const EtcdTls tls{dir / (name + "-ca.pem"), dir / (name + "-server.pem"),
                    dir / (name + "-server.key")};
  const std::string ca_key = (dir / (name + "-ca.key")).string();
  const std::string csr = (dir / (name + "-server.csr")).string();
  const std::string ext = (dir / (name + "-ext.cnf")).string();
  write_file(ext, "subjectAltName=IP:127.0.0.1\n");
  const std::vector<std::vector<std::string>> steps{
      {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out",
       tls.ca.string(), "-days", "1", "-subj", "/CN=" + name + "-ca"},
      {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", tls.key.string(), "-out", csr,
       "-subj", "/CN=127.0.0.1"},
      {"openssl", "x509", "-req", "-in", csr, "-CA", tls.ca.string(), "-CAkey", ca_key,
       "-CAcreateserial", "-out", tls.cert.string(), "-days", "1", "-extfile", ext}};
  for (const auto& step : steps) {
    std::vector<std::string> quiet{"sh", "-c", "exec \"$@\" 2>/dev/null", "sh"};
    quiet.insert(quiet.end(), step.begin(), step.end());
    Process openssl(quiet);
    BOOST_REQUIRE_MESSAGE(openssl.exit_code(60s) == 0, "openssl " << step[1] << " failed");
  }
  return tls;
}

EtcdServer::EtcdServer(int members, std::optional<EtcdTls> tls, std::vector<std::string> flags)
    : tls_(std::move(tls)) {
  std::vector<int> peer_ports;
  for (int i = 0; i < members; ++i) {
    endpoints_.push_back("127.0.0.1:" + std::to_string(free_loopback_port()));
    peer_ports.push_back(free_loopback_port());
  }
  std::string cluster;
  for (int i = 0; i < members; ++i) {
    if (!cluster.empty()) cluster += ',';
    cluster += "m" + std::to_string(i) + "=http://127.0.0.1:" + std::to_string(peer_ports[i]);
  }
  for (int i = 0; i < members; ++i) {
    const std::string name = "m" + std::to_string(i);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_ports[i]);
    const std::string client = (tls_ ? "https://" : "http://") + endpoints_[i];
    // etcd logs to stderr: into the data directory, out of the test's output.
    std::vector<std::string> argv{"sh", "-c", "exec \"$@\" 2>\"$0\"", (dir_ / (name + ".log")).string(),
                                  "etcd", "--name", name, "--data-dir", (dir_ / name).string(),
                                  "--listen-client-urls", client, "--advertise-client-urls", client,
                                  "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                  "--initial-cluster", cluster, "--initial-cluster-state", "new",
                                  "--cert-file", tls_ ? tls_->cert.string() : "",
                                  "--key-file", tls_ ? tls_->key.string() : ""};
    argv.insert(argv.end(), flags.begin(), flags.end());
    members_.push_back(Process(argv));
  }
  wait_until_ready();
}

// Ready when a linearizable read succeeds: the cluster has a leader.
void EtcdServer::wait_until_ready() const {
  detail::EtcdSettings settings;
  settings.endpoints = endpoints_;
  settings.dial_timeout = 20s;
  if (tls_) settings.cacert = tls_->ca.string();
  std::error_code ec;
  const auto client = detail::EtcdClient::connect(settings, ec);
  BOOST_REQUIRE_MESSAGE(client, "etcd did not start: " << ec.message());
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    etcdserverpb::RangeRequest request;
    request.set_key("ready");
    etcdserverpb::RangeResponse response;
    ec = detail::call(*client, client->kv(), &etcdserverpb::KV::Stub::Range, request, response);
    if (!ec) return;
    BOOST_REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                          "etcd has no leader: " << ec.message());
    std::this_thread::sleep_for(20ms);
  }
}

std::string EtcdServer::endpoints_flag() const { return detail::endpoints_text(endpoints_); }

void EtcdServer::kill_member(int index) {
  members_.at(static_cast<std::size_t>(index)).kill(SIGKILL);
  members_.at(static_cast<std::size_t>(index)).wait();
}

std::vector<std::string> EtcdServer::etcdctl(std::vector<std::string> args) const {
  std::vector<std::string> argv{"etcdctl", "--endpoints=" + endpoints_flag()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

namespace {

void append_line(const fs::path& file, const std::string& line) {
  std::ofstream out(file, std::ios::app);
  out << line << '\n';
}

}  // namespace

int child_cluster_counter(const std::string& endpoints, const std::string& name,
                          const fs::path& counter, const fs::path& log, int times) {
  ClusterOptions cluster;
  cluster.endpoints = ClusterOptions::endpoint_list(endpoints);
  std::error_code ec;
  const ClusterLock lock = ClusterLock::open(cluster, name, LockOptions(), ec);
  if (ec) return kChildError;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  for (int i = 0; i < times; ++i) {
    ClusterLockHold hold = lock.acquire(Mode::exclusive, std::nullopt, ec);
    if (ec) return kChildError;
    const long count = std::stol(read_file(counter));
    write_file(counter, std::to_string(count + 1) + "\n");
    append_line(log, std::to_string(hold.fencing_token()) + " " + host);
    hold.release(ec);
    if (ec) return kChildError;
  }
  return kChildOk;
}

}  // namespace packlock::test
