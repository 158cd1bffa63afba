#pragma once
// Option values shared by the subcommands, and how Program_options reads
// them: durations, the stale policy, and the lock settings every
// subcommand that opens a pack understands.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <boost/any.hpp>
#include <boost/program_options.hpp>

#include <packlock/options.hpp>
#include <packlock/pack_lock.hpp>

namespace packlock {
// In the namespace of StalePolicy, where Program_options finds it (by
// argument-dependent lookup): "safe" or "mtime".
void validate(boost::any& value, const std::vector<std::string>& tokens, StalePolicy*, int);
}  // namespace packlock

namespace packlock::cli {

namespace po = boost::program_options;

// A command-line duration (see duration.hpp for the forms accepted).
struct Duration {
  std::chrono::nanoseconds value{};
  bool given = false;  // set by the parser: the option was on the command line
};

// Program_options reads these types through these overloads; a bad value is
// a usage error naming the option.
void validate(boost::any& value, const std::vector<std::string>& tokens, Duration*, int);

// How a pack is to be locked, beyond the mode: liveness settings and
// whether the pack may be created.
struct LockSettings {
  Duration stale_after;  // not given: derived from --heartbeat, as the library does
  Duration heartbeat;    // not given: derived from --stale-after
  StalePolicy stale_policy = StalePolicy::safe;
  bool no_create = false;
  bool no_record_command = false;

  // The heartbeat and stale period in force (resolved_timing()).
  Timing timing() const noexcept {
    return resolved_timing(heartbeat.given ? heartbeat.value : std::chrono::nanoseconds(0),
                           stale_after.given ? stale_after.value : std::chrono::nanoseconds(0));
  }
};

// --stale-after, --heartbeat, --stale-policy, --no-create,
// --no-record-command (run).
void add_lock_options(po::options_description& options, LockSettings& settings);
// What is given must be positive, and a heartbeat given with a stale period
// must be shorter than it, or every holder would look stale between two
// beats. The one not given follows the other.
void check_lock_settings(const LockSettings& settings);

// The one place where command-line settings become a library call: opens
// the pack's lock with these liveness settings. With `no_create` a missing
// pack directory or sidecar gives ENOENT and nothing is created. `command`
// goes into the owner record; `logger` hears the library's events.
PackLock open_pack_lock(const std::filesystem::path& pack, const LockSettings& settings,
                        std::error_code& ec, std::optional<std::string> command = std::nullopt,
                        Logger logger = {});

// Parses a subcommand's arguments into the variables `options` names and
// returns the positional ones. A Program_options error becomes a
// UsageError. Long options must be spelled out: a prefix that is unique
// today would become ambiguous, and break scripts, when an option is added.
std::vector<std::string> parse_arguments(
    const std::vector<std::string>& args, const po::options_description& options,
    const po::command_line_parser::style_parser& extra_parser = {});

}  // namespace packlock::cli
