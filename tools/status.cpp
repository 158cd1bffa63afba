// packlock status: every pack at or below some paths, as a table or JSON.

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <iostream>
#include <optional>
#include <sstream>

#include "cluster_run.hpp"
#include "cluster_view.hpp"
#include "duration.hpp"
#include "exit_codes.hpp"
#include "options.hpp"
#include "output.hpp"
#include "pack_view.hpp"
#include "signals.hpp"
#include "subcommands.hpp"

namespace packlock::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSynopsis =
    "  packlock status [OPTIONS] [PATH...]\n"
    "  packlock status --etcd ENDPOINTS [OPTIONS] [PREFIX...]";
constexpr const char* kSummary =
    "List the packs at or below each PATH (default .), or the cluster locks whose names start "
    "with each PREFIX (default: all), with their holders and waiters.";
constexpr const char* kFooter =
    "Exit status: 0, or the code of the first error: 66 no such PATH,\n"
    "69 no etcd endpoint answered, 77 permission denied (or etcd refused the credentials\n"
    "or TLS), 71 system error; 64 usage. See packlock-status(1).";

constexpr std::size_t kCommandColumn = 50;

struct StatusOptions {
  std::vector<fs::path> paths;
  bool json = false;
  bool held_only = false;
  bool watch = false;
  int max_depth = INT_MAX;
  std::chrono::nanoseconds interval = std::chrono::seconds(1);
  std::chrono::nanoseconds stale_after = std::chrono::seconds(30);
  bool stale_after_given = false;
  bool max_depth_given = false;
  ClusterSettings cluster;  // with --etcd, the arguments are name prefixes
};

std::optional<StatusOptions> parse(const std::vector<std::string>& args) {
  StatusOptions options;
  bool help = false;
  po::options_description described("packlock status");
  described.add_options()
    ("json", po::bool_switch(&options.json), "print a JSON array, one object per pack")
    ("max-depth", po::value(&options.max_depth)->value_name("N")->notifier(
         [&](int) { options.max_depth_given = true; }),
     "look at most N directories below each PATH (0: PATH only)")
    ("held", po::bool_switch(&options.held_only), "show only packs that are held or stale")
    ("stale-after", po::value<Duration>()->value_name("DUR")->notifier(
         [&](const Duration& d) {
           options.stale_after = d.value;
           options.stale_after_given = true;
         }),
     "judge a holder stale when its heartbeat is older than DUR (default 30s)")
    ("watch", po::bool_switch(&options.watch), "refresh until interrupted")
    ("interval", po::value<Duration>()->value_name("DUR")->notifier(
         [&](const Duration& d) { options.interval = d.value; }),
     "with --watch, refresh every DUR (default 1s)")
    ("help,h", po::bool_switch(&help), "show this help and exit");
  add_cluster_options(described, options.cluster,
                      "list the locks of this etcd cluster (host:port,...)");
  std::vector<std::string> paths = parse_arguments(args, described);
  if (help) {
    print_help(std::cout, kSynopsis, kSummary, described, kFooter);
    return std::nullopt;
  }
  if (options.max_depth < 0) throw UsageError("--max-depth takes a number from 0 up");
  if (options.stale_after <= std::chrono::nanoseconds::zero()) {
    throw UsageError("--stale-after must be longer than 0");
  }
  if (options.interval <= std::chrono::nanoseconds::zero()) {
    throw UsageError("--interval must be longer than 0");
  }
  if (options.cluster.wanted()) {
    if (options.max_depth_given) throw UsageError("--max-depth walks directories: it has no meaning with --etcd");
    if (options.stale_after_given) throw UsageError("--stale-after has no meaning with --etcd: leases expire");
    if (paths.empty()) paths.emplace_back("");  // every lock
  }
  if (paths.empty()) paths.emplace_back(".");
  options.paths.assign(paths.begin(), paths.end());
  return options;
}

struct Found {
  std::vector<PackView> views;
  std::vector<ClusterLockView> locks;  // with --etcd
  int error_exit = 0;  // the first error's exit code
};

void note_error(Found& found, const fs::path& path, const std::error_code& ec) {
  if (found.error_exit == 0) found.error_exit = exit_code_for(ec);
  print_error(path.string() + ": " + cause_of(ec));
}

bool has_sidecar(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(dir / kDefaultSidecarName, ec));
}

// A tree is walked while others change it: an entry removed or replaced
// since it was listed is skipped, not an error.
bool vanished(const std::error_code& ec) {
  return ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory;
}

// Depth first; symbolic links to directories are not followed, so a link
// cannot make the walk loop or leave the tree. `dir` is a PATH argument at
// the top, an entry found in the walk below it.
void find_packs(const fs::path& dir, int depth_left, bool top, std::vector<fs::path>& packs,
                Found& found) {
  if (has_sidecar(dir)) packs.push_back(dir.lexically_normal());
  if (depth_left == 0) return;
  std::error_code ec;
  for (fs::directory_iterator entry(dir, ec), end; !ec && entry != end; entry.increment(ec)) {
    std::error_code type_ec;
    if (entry->is_directory(type_ec) && !entry->is_symlink(type_ec)) {
      find_packs(entry->path(), depth_left - 1, false, packs, found);
    }
  }
  if (ec && !(vanished(ec) && !top)) note_error(found, dir, ec);
}

// The locks under each prefix, each lock once, sorted by name.
Found look_at_cluster(const StatusOptions& options, ClusterObserver& cluster) {
  Found found;
  for (const fs::path& prefix : options.paths) {
    std::error_code ec;
    std::vector<ClusterLockView> locks = cluster.locks_under(prefix.string(), ec);
    if (ec) {
      if (found.error_exit == 0) found.error_exit = exit_code_for(ec);
      print_error("etcd " + options.cluster.endpoints + ": " + cause_of(ec));
      continue;
    }
    std::move(locks.begin(), locks.end(), std::back_inserter(found.locks));
  }
  const auto by_name = [](const ClusterLockView& a, const ClusterLockView& b) { return a.name < b.name; };
  std::stable_sort(found.locks.begin(), found.locks.end(), by_name);
  found.locks.erase(std::unique(found.locks.begin(), found.locks.end(),
                                [](const ClusterLockView& a, const ClusterLockView& b) {
                                  return a.name == b.name;
                                }),
                    found.locks.end());
  return found;
}

Found look(const StatusOptions& options, ClusterObserver* cluster) {
  if (cluster) return look_at_cluster(options, *cluster);
  Found found;
  std::vector<fs::path> packs;
  for (const fs::path& path : options.paths) {
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
      note_error(found, path, ec ? ec : std::make_error_code(std::errc::not_a_directory));
      continue;
    }
    find_packs(path, options.max_depth, true, packs, found);
  }
  std::sort(packs.begin(), packs.end());
  packs.erase(std::unique(packs.begin(), packs.end()), packs.end());
  for (const fs::path& pack : packs) {
    std::error_code ec;
    PackView view = view_pack(pack, options.stale_after, ec);
    if (vanished(ec)) continue;  // gone since the walk found it
    if (ec) {
      note_error(found, pack, ec);
    } else if (view.state == PackState::held || view.state == PackState::stale ||
               !options.held_only) {
      found.views.push_back(std::move(view));
    }
  }
  return found;
}

std::string pids_of(const std::vector<Party>& parties) {
  if (parties.empty()) return "-";
  std::string text;
  for (const Party& party : parties) {
    text += (text.empty() ? "" : ",") + std::to_string(party.pid) + (party.exited ? "(exited)" : "");
  }
  return text;
}

// The command of the first holder, or of the first keeper of an exited one.
std::string command_cell(const PackView& view) {
  if (view.holders.empty()) return "-";
  if (view.holders.front().exited && !view.keepers.empty()) {
    const Party& keeper = view.keepers.front();
    return "kept by " + std::to_string(keeper.pid) + ": " + keeper.command;
  }
  return view.holders.front().command.empty() ? "-" : view.holders.front().command;
}

std::string age_or_dash(const std::optional<std::chrono::nanoseconds>& age) {
  if (!age || *age < std::chrono::nanoseconds::zero()) return "-";
  return format_duration(*age);
}

std::string heartbeat_cell(const PackView& view) {
  if (!view.owner) return "-";
  return view.mtime_skewed ? "skewed" : age_or_dash(view.heartbeat_age);
}

// Hard-linked sidecars are named under the table: a column would be empty
// for almost every pack.
std::string packs_table(const std::vector<PackView>& views) {
  std::vector<std::vector<std::string>> rows{{"PACK", "STATE", "MODE", "HOLDERS", "WAITERS",
                                              "HELD-FOR", "HEARTBEAT", "COMMAND"}};
  std::string notes;
  for (const PackView& view : views) {
    const std::string command = command_cell(view);
    rows.push_back({view.pack.string(), std::string(to_string(view.state)),
                    view.mode ? std::string(to_string(*view.mode)) : "-", pids_of(view.holders),
                    std::to_string(view.waiters.size()),
                    owner_unknown(view) ? "unknown" : age_or_dash(view.held_for),
                    heartbeat_cell(view),
                    shorten(command, kCommandColumn)});
    if (const std::string links = describe_links(view); !links.empty()) {
      notes += printable(view.pack.string()) + ": " + links + '\n';
    }
  }
  std::ostringstream out;
  print_table(out, rows);
  out << notes;
  return out.str();
}

std::string render(const Found& found, const StatusOptions& options) {
  if (!options.json) return options.cluster.wanted() ? table_of(found.locks) : packs_table(found.views);
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const PackView& view : found.views) list.push_back(to_json(view));
  for (const ClusterLockView& view : found.locks) list.push_back(to_json(view));
  // --watch --json writes one document per line.
  return (options.watch ? list.dump() : list.dump(2)) + '\n';
}

// Until a stop signal: a refreshed screen on a terminal, successive
// snapshots elsewhere.
int watch(const StatusOptions& options, ClusterObserver* cluster) {
  SignalCatcher signals{SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  const int interval_ms = static_cast<int>(std::min<long long>(
      std::chrono::ceil<std::chrono::milliseconds>(options.interval).count(), INT_MAX));
  for (;;) {
    const Found found = look(options, cluster);
    if (terminal) std::cout << "\033[H\033[2J";
    std::cout << render(found, options);
    if (!terminal && !options.json) std::cout << '\n';
    std::cout.flush();
    for (const auto& caught : signals.wait(interval_ms)) {
      // Interrupting is how a watch ends: not a failure.
      if (is_stop_signal(caught.signo)) return kExitOk;
    }
  }
}

}  // namespace

int status_main(const std::vector<std::string>& args) {
  const std::optional<StatusOptions> options = parse(args);
  if (!options) return kExitOk;
  std::unique_ptr<ClusterObserver> cluster;
  if (options->cluster.wanted()) cluster = observe_cluster(options->cluster);
  if (options->watch) return watch(*options, cluster.get());
  const Found found = look(*options, cluster.get());
  // A cluster that did not answer has no table to show, not an empty one.
  if (!(cluster && found.error_exit != 0)) std::cout << render(found, *options) << std::flush;
  return found.error_exit;
}

}  // namespace packlock::cli
