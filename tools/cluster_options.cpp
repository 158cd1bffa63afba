// The cluster options of `packlock run --etcd`, and the hand-over from the
// local command to packlock-etcd (cluster_run.hpp).

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "cluster_run.hpp"

namespace packlock::cli {

void add_cluster_options(po::options_description& options, ClusterSettings& settings,
                         const char* etcd_help) {
  options.add_options()
    ("etcd", po::value(&settings.endpoints)->value_name("ENDPOINTS"), etcd_help)
    ("cacert", po::value(&settings.cacert)->value_name("FILE"),
     "verify the etcd servers with this CA bundle (TLS)")
    ("cert", po::value(&settings.cert)->value_name("FILE"),
     "the client certificate for etcd (TLS)")
    ("key-file", po::value(&settings.key_file)->value_name("FILE"),
     "the client certificate's key (TLS)")
    ("user", po::value(&settings.user)->value_name("NAME[:PASSWORD]"),
     "the etcd user")
    ("password", po::value(&settings.password)->value_name("PASSWORD"),
     "the etcd user's password")
    ("dial-timeout", po::value(&settings.dial_timeout)->value_name("DUR"),
     "give up on unreachable etcd endpoints after DUR (default 2s)");
}

void add_cluster_key_option(po::options_description& options, ClusterSettings& settings) {
  options.add_options()
    ("key", po::value(&settings.key)->value_name("NAME"),
     "the cluster lock's name, as etcdctl lock takes it (default: the pack's canonical path)");
}

void complete_cluster_settings(ClusterSettings& settings) {
  if (settings.endpoints.empty()) {
    if (const char* endpoints = std::getenv("PACKLOCK_ETCD_ENDPOINTS")) settings.endpoints = endpoints;
  }
}

namespace {

// `packlock run` or packlock-run: PACKLOCK_ETCD_ENDPOINTS is run's
// default for --etcd. Probe and status read a cluster only when told by
// --etcd, since their arguments are then names, not paths.
bool is_run(char** argv) {
  const std::string_view invoked = argv[0];
  if (invoked.substr(invoked.rfind('/') + 1) == "packlock-run") return true;
  for (char** arg = argv + 1; *arg; ++arg) {
    if ((*arg)[0] != '-') return std::strcmp(*arg, "run") == 0;
  }
  return false;
}

bool asks_for_cluster(char** argv) {
  if (const char* endpoints = std::getenv("PACKLOCK_ETCD_ENDPOINTS");
      endpoints && *endpoints && is_run(argv)) {
    return true;
  }
  for (char** arg = argv + 1; *arg; ++arg) {
    if (std::strcmp(*arg, "--") == 0) return false;
    if (std::strcmp(*arg, "--etcd") == 0 || std::strncmp(*arg, "--etcd=", 7) == 0) return true;
  }
  return false;
}

}  // namespace

void hand_over_to_cluster_command(char** argv, std::string& missing) {
  if (carries_cluster_backend() || !asks_for_cluster(argv)) return;
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) {
    missing = "packlock-etcd (/proc/self/exe: " + ec.message() + ")";
    return;
  }
  // Beside this command in a build tree; in libexec/packlock when installed.
  const std::filesystem::path candidates[] = {
      self.parent_path() / "packlock-etcd",
      self.parent_path().parent_path() / "libexec" / "packlock" / "packlock-etcd"};
  for (const auto& candidate : candidates) {
    ::execv(candidate.c_str(), argv);
    if (!missing.empty()) missing += " or ";
    missing += candidate.string();
  }
  missing += " (" + std::string(std::strerror(errno)) + ")";
}

}  // namespace packlock::cli
