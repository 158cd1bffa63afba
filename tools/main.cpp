// packlock: one binary, three subcommands. Started as packlock-run,
// packlock-probe or packlock-status (links to it) it is that subcommand.
//
// Only this file decides the exit code: the subcommands return theirs, and
// a usage error or an unexpected exception ends up here as one line.

#include <iostream>
#include <map>
#include <string_view>

#include <boost/program_options.hpp>

#include <packlock/version.hpp>

#include "cluster_run.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "subcommands.hpp"

namespace {

using namespace packlock::cli;
namespace po = boost::program_options;

using Subcommand = int (*)(const std::vector<std::string>&);

const std::map<std::string_view, Subcommand> kSubcommands{
    {"run", run_main}, {"probe", probe_main}, {"status", status_main}};

constexpr const char* kSynopsis =
    "  packlock run [OPTIONS] PACK [--] COMMAND [ARG...]\n"
    "  packlock probe [OPTIONS] PACK...\n"
    "  packlock status [OPTIONS] [PATH...]\n"
    "  packlock help [SUBCOMMAND]";
constexpr const char* kSummary =
    "Advisory locks on directories (packs): flock(2) on PACK/.grex-lock.";
constexpr const char* kFooter =
    "Subcommands:\n"
    "  run     run a command while holding the lock of a pack\n"
    "  probe   tell whether packs are free or held, and by whom\n"
    "  status  list the packs below some paths with their holders\n"
    "\n"
    "'packlock SUBCOMMAND --help' describes each. See packlock(1).";

struct Global {
  bool help = false;
  bool version = false;
  std::string subcommand;
  std::vector<std::string> rest;
};

// Program_options reads the global options and the subcommand's name; the
// arguments after the name are the subcommand's, so that `packlock run
// --help` is run's help and not packlock's.
Global parse_global(int argc, char** argv, po::options_description& described) {
  Global global;
  int first = 1;
  while (first < argc && argv[first][0] == '-') ++first;
  const int end = first < argc ? first + 1 : argc;
  described.add_options()
    ("help,h", po::bool_switch(&global.help), "show this help and exit")
    ("version,V", po::bool_switch(&global.version), "show the version and exit");
  po::options_description all;
  all.add(described).add_options()("subcommand", po::value(&global.subcommand));
  po::positional_options_description positional;
  positional.add("subcommand", 1);
  po::variables_map values;
  try {
    po::store(po::command_line_parser(end, argv).options(all).positional(positional).run(),
              values);
    po::notify(values);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  global.rest.assign(argv + end, argv + argc);
  return global;
}

int dispatch(int argc, char** argv) {
  const std::string_view invoked = std::string_view(argv[0]).substr(
      std::string_view(argv[0]).rfind('/') + 1);
  for (const auto& [name, subcommand] : kSubcommands) {
    if (invoked == "packlock-" + std::string(name)) {
      set_program_name(std::string(invoked));
      return subcommand({argv + 1, argv + argc});
    }
  }
  po::options_description described("packlock");
  const Global global = parse_global(argc, argv, described);
  if (global.version) {
    std::cout << "packlock " << packlock::kVersion << '\n';
    return kExitOk;
  }
  if (global.help || global.subcommand == "help") {
    // "packlock help run" and "packlock --help run" are run's help.
    const std::string topic = global.subcommand == "help"
                                  ? (global.rest.empty() ? "" : global.rest[0])
                                  : global.subcommand;
    if (topic.empty()) {
      print_help(std::cout, kSynopsis, kSummary, described, kFooter);
      return kExitOk;
    }
    const auto named = kSubcommands.find(topic);
    if (named == kSubcommands.end()) throw UsageError("no such subcommand: " + topic);
    set_program_name("packlock " + topic);
    return named->second({"--help"});
  }
  if (global.subcommand.empty()) throw UsageError("no subcommand given (run, probe, status)");
  const auto named = kSubcommands.find(global.subcommand);
  if (named == kSubcommands.end()) throw UsageError("no such subcommand: " + global.subcommand);
  set_program_name("packlock " + global.subcommand);
  return named->second(global.rest);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 1) return kExitUsage;
  std::string missing;
  hand_over_to_cluster_command(argv, missing);
  if (!missing.empty()) {
    print_error("a cluster lock needs packlock-etcd, which is not at " + missing);
    return kExitUnavailable;
  }
  try {
    return dispatch(argc, argv);
  } catch (const UsageError& e) {
    print_error(std::string(e.what()) + " (see --help)");
    return kExitUsage;
  } catch (const std::exception& e) {
    print_error(e.what());
    return kExitOsError;
  }
}
