// packlock probe: is this pack locked, by whom? For cron and CI: reads the
// kernel's lock table, never blocks (unless --wait), never creates a
// sidecar and never takes the lock (unless --try).

#include <algorithm>
#include <iostream>
#include <optional>
#include <thread>

#include "cluster_run.hpp"
#include "cluster_view.hpp"
#include "exit_codes.hpp"
#include "options.hpp"
#include "output.hpp"
#include "pack_view.hpp"
#include "signals.hpp"
#include "subcommands.hpp"

namespace packlock::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kSynopsis =
    "  packlock probe [OPTIONS] PACK...\n"
    "  packlock probe --etcd ENDPOINTS [OPTIONS] NAME...";
constexpr const char* kSummary =
    "Tell whether each PACK (or cluster lock NAME) is free or held, and by whom, without "
    "locking it.";
constexpr const char* kFooter =
    "Exit status: 0 all free, 1 some held, 2 some stale (the worst wins);\n"
    "66 no such pack (unless --missing-ok), 64 usage, 69 no etcd endpoint answered,\n"
    "71 system error, 77 permission denied (or etcd refused the credentials or TLS).\n"
    "See packlock-probe(1).";

// --wait re-reads the lock table on this back-off: probing must not queue
// for the lock like an acquirer, so it cannot use the library's waiter.
constexpr auto kFirstRecheck = std::chrono::milliseconds(10);
constexpr auto kLongestRecheck = std::chrono::milliseconds(250);

struct ProbeOptions {
  std::vector<std::filesystem::path> packs;
  bool json = false;
  bool quiet = false;
  bool try_lock = false;
  bool missing_ok = false;
  std::optional<std::chrono::nanoseconds> wait;
  LockSettings lock;  // stale_after only
  ClusterSettings cluster;  // with --etcd, the arguments are cluster lock names
};

std::optional<ProbeOptions> parse(const std::vector<std::string>& args) {
  ProbeOptions options;
  bool help = false;
  po::options_description described("packlock probe");
  described.add_options()
    ("json", po::bool_switch(&options.json), "print a JSON array, one object per pack")
    ("quiet,q", po::bool_switch(&options.quiet), "print nothing; the exit status tells")
    ("try", po::bool_switch(&options.try_lock),
     "confirm \"free\" by taking and releasing the lock without waiting")
    ("stale-after", po::value(&options.lock.stale_after)->value_name("DUR"),
     "judge a holder stale when its heartbeat is older than DUR (default 30s)")
    ("wait", po::value<Duration>()->value_name("DUR")->notifier(
         [&](const Duration& d) { options.wait = d.value; }),
     "wait up to DUR for every pack to be free")
    ("missing-ok", po::bool_switch(&options.missing_ok),
     "a pack that does not exist counts as free")
    ("help,h", po::bool_switch(&help), "show this help and exit");
  add_cluster_options(described, options.cluster,
                      "probe the locks NAME... of this etcd cluster (host:port,...)");
  const std::vector<std::string> packs = parse_arguments(args, described);
  if (help) {
    print_help(std::cout, kSynopsis, kSummary, described, kFooter);
    return std::nullopt;
  }
  if (packs.empty()) throw UsageError("no PACK given");
  if (options.json && options.quiet) throw UsageError("--json and -q contradict each other");
  check_lock_settings(options.lock);
  if (options.cluster.wanted()) {
    // A lease expires on its own and a cluster has no directories.
    if (options.try_lock) throw UsageError("--try locks a pack: it has no meaning with --etcd");
    if (options.missing_ok) throw UsageError("--missing-ok is about packs: a cluster lock is never missing");
    if (options.lock.stale_after.given) throw UsageError("--stale-after has no meaning with --etcd: leases expire");
  }
  options.packs.assign(packs.begin(), packs.end());
  return options;
}

struct Probed {
  std::vector<PackView> views;
  std::vector<ClusterLockView> locks;  // with --etcd
  int error_exit = 0;   // the first error's exit code
  int stop_signal = 0;  // the signal that ended --wait, if one did
};

Probed probe_cluster(const ProbeOptions& options, ClusterObserver& cluster) {
  Probed probed;
  for (const auto& name : options.packs) {
    std::error_code ec;
    ClusterLockView view = cluster.lock(name.string(), ec);
    if (ec) {
      if (probed.error_exit == 0) probed.error_exit = exit_code_for(ec);
      print_error(name.string() + ": etcd " + options.cluster.endpoints + ": " + cause_of(ec));
      continue;
    }
    probed.locks.push_back(std::move(view));
  }
  return probed;
}

Probed probe_all(const ProbeOptions& options, ClusterObserver* cluster) {
  if (cluster) return probe_cluster(options, *cluster);
  Probed probed;
  for (const auto& pack : options.packs) {
    std::error_code ec;
    // --try: a pack the kernel table shows free may still be held from
    // another host of a network file system; observe() asks the lock itself,
    // creating nothing and, unlike an acquirer, never recovering a stale lock.
    PackView view = view_pack(pack, options.lock.timing().stale_after, ec, options.try_lock);
    if (!ec && view.state == PackState::missing && !options.missing_ok) {
      ec = std::make_error_code(std::errc::no_such_file_or_directory);
    }
    if (ec) {
      if (probed.error_exit == 0) probed.error_exit = exit_code_for(ec);
      print_error(pack.string() + ": " + cause_of(ec));
      continue;
    }
    probed.views.push_back(std::move(view));
  }
  return probed;
}

bool is_locked(const PackView& view) {
  return view.state == PackState::held || view.state == PackState::stale;
}

bool all_free(const Probed& probed) {
  return std::none_of(probed.views.begin(), probed.views.end(), is_locked) &&
         std::all_of(probed.locks.begin(), probed.locks.end(),
                     [](const ClusterLockView& view) { return view.holders.empty(); });
}

bool any_stale(const Probed& probed) {
  return std::any_of(probed.views.begin(), probed.views.end(),
                     [](const PackView& view) { return view.state == PackState::stale; });
}

// Re-probes until every pack is free, the time is up, or a stop signal.
Probed probe_until_free(const ProbeOptions& options, ClusterObserver* cluster) {
  SignalCatcher signals{SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  const auto deadline = Clock::now() + *options.wait;
  auto delay = std::chrono::duration_cast<Clock::duration>(kFirstRecheck);
  for (;;) {
    Probed probed = probe_all(options, cluster);
    const auto now = Clock::now();
    if (probed.error_exit != 0 || all_free(probed) || now >= deadline) return probed;
    const auto pause = std::min(delay, deadline - now);
    const auto caught =
        signals.wait(static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(pause).count()));
    for (const auto& signal : caught) {
      if (is_stop_signal(signal.signo)) {
        probed.stop_signal = signal.signo;
        return probed;
      }
    }
    delay = std::min<Clock::duration>(delay * 2, kLongestRecheck);
  }
}

void print(const Probed& probed, const ProbeOptions& options) {
  if (options.quiet) return;
  if (options.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const PackView& view : probed.views) list.push_back(to_json(view));
    for (const ClusterLockView& view : probed.locks) list.push_back(to_json(view));
    std::cout << list.dump(2) << '\n';
    return;
  }
  for (const PackView& view : probed.views) std::cout << describe(view) << '\n';
  for (const ClusterLockView& view : probed.locks) std::cout << describe(view) << '\n';
}

int exit_code(const Probed& probed) {
  if (probed.error_exit != 0) return probed.error_exit;
  if (probed.stop_signal != 0) return kExitSignalBase + probed.stop_signal;
  if (any_stale(probed)) return kExitStale;
  return all_free(probed) ? kExitOk : kExitHeld;
}

}  // namespace

int probe_main(const std::vector<std::string>& args) {
  const std::optional<ProbeOptions> options = parse(args);
  if (!options) return kExitOk;
  std::unique_ptr<ClusterObserver> cluster;
  if (options->cluster.wanted()) cluster = observe_cluster(options->cluster);
  const Probed probed = options->wait ? probe_until_free(*options, cluster.get())
                                      : probe_all(*options, cluster.get());
  print(probed, *options);
  std::cout.flush();
  return exit_code(probed);
}

}  // namespace packlock::cli
