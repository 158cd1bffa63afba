#pragma once
// A real etcd (Debian's etcd-server) for the cluster tests: one member or
// three, on free loopback ports, with a temporary data directory. Started
// by the constructor, ready when it returns; every member is stopped by
// its pid when the object goes.

#include <string>
#include <vector>

#include "loopback_port.hpp"
#include "support.hpp"

namespace packlock::test {

// PEM files: the server's certificate and key, and the CA that signed it.
struct EtcdTls {
  fs::path ca, cert, key;
};

// A CA and a server certificate for 127.0.0.1 made with openssl in `dir`;
// `name` tells apart several CAs in one directory.
EtcdTls make_tls_files(const fs::path& dir, const std::string& name);

class EtcdServer {
 public:
  // With `tls`, clients speak TLS (https) and must trust tls->ca; `flags`
  // go to every member as they are.
  explicit EtcdServer(int members = 1, std::optional<EtcdTls> tls = std::nullopt,
                      std::vector<std::string> flags = {});
  ~EtcdServer() = default;
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // "127.0.0.1:PORT" of each member's client URL.
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  // The same joined with commas, as etcdctl's --endpoints takes them.
  std::string endpoints_flag() const;
  // Kills member `index` (SIGKILL) and waits for it.
  void kill_member(int index);

  // etcdctl against this server: the arguments after the endpoints.
  std::vector<std::string> etcdctl(std::vector<std::string> args) const;

 private:
  void wait_until_ready() const;

  TempDir dir_;
  std::optional<EtcdTls> tls_;
  std::vector<std::string> endpoints_;
  std::vector<Process> members_;
};

// The child role cluster_counter ENDPOINTS NAME COUNTER LOG N: N times,
// under the cluster lock NAME, adds one to the number in COUNTER and
// appends "TOKEN HOST" to LOG.
int child_cluster_counter(const std::string& endpoints, const std::string& name,
                          const fs::path& counter, const fs::path& log, int times);

}  // namespace packlock::test
