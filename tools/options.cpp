#include "options.hpp"

#include "duration.hpp"
#include "exit_codes.hpp"

namespace packlock::cli {
namespace {

// Program_options fills in the option's name when it reports this.
class InvalidValue : public po::error_with_option_name {
 public:
  InvalidValue(const std::string& token, const std::string& expected)
      : po::error_with_option_name("the argument ('%value%') for option '%canonical_option%' is "
                                   "invalid: " + expected) {
    set_substitute("value", token);
  }
};

const std::string& single_token(const boost::any& value, const std::vector<std::string>& tokens) {
  po::validators::check_first_occurrence(value);
  return po::validators::get_single_string(tokens);
}

}  // namespace

void validate(boost::any& value, const std::vector<std::string>& tokens, Duration*, int) {
  const std::string& token = single_token(value, tokens);
  const auto parsed = parse_duration(token);
  if (!parsed) throw InvalidValue(token, "durations look like 5, 0.5, 500ms, 2s, 1m, 1h");
  value = Duration{*parsed, true};
}

void add_lock_options(po::options_description& options, LockSettings& settings) {
  options.add_options()
    ("stale-after", po::value(&settings.stale_after)->value_name("DUR"),
     "a held lock whose heartbeat is older than DUR is stale (default 30s, or 3 x --heartbeat if longer)")
    ("heartbeat", po::value(&settings.heartbeat)->value_name("DUR"),
     "refresh the sidecar's mtime every DUR while holding (default 10s, or --stale-after/3 if shorter)")
    ("stale-policy", po::value(&settings.stale_policy)->value_name("POLICY"),
     "when a stale lock may be recovered: safe (default) or mtime")
    ("no-create", po::bool_switch(&settings.no_create),
     "fail (exit 66) instead of creating a missing pack or sidecar")
    ("no-record-command", po::bool_switch(&settings.no_record_command),
     "keep the command line out of the owner record");
}

void check_lock_settings(const LockSettings& settings) {
  if (settings.heartbeat.given && settings.heartbeat.value <= std::chrono::nanoseconds::zero()) {
    throw UsageError("--heartbeat must be longer than 0");
  }
  if (settings.stale_after.given && settings.stale_after.value <= std::chrono::nanoseconds::zero()) {
    throw UsageError("--stale-after must be longer than 0");
  }
  if (settings.heartbeat.given && settings.stale_after.given &&
      settings.stale_after.value <= settings.heartbeat.value) {
    throw UsageError("--heartbeat " + format_duration(settings.heartbeat.value) +
                     " must be shorter than --stale-after " +
                     format_duration(settings.stale_after.value));
  }
}

PackLock open_pack_lock(const std::filesystem::path& pack, const LockSettings& settings,
                        std::error_code& ec, std::optional<std::string> command, Logger logger) {
  LockOptions options;
  const Timing timing = settings.timing();
  options.stale_after = timing.stale_after;
  options.heartbeat = timing.heartbeat;
  options.stale_policy = settings.stale_policy;
  options.create = !settings.no_create;
  options.command = std::move(command);
  options.record_command = !settings.no_record_command;
  options.logger = std::move(logger);
  return PackLock::open(pack, options, ec);
}

std::vector<std::string> parse_arguments(
    const std::vector<std::string>& args, const po::options_description& options,
    const po::command_line_parser::style_parser& extra_parser) {
  namespace style = po::command_line_style;
  std::vector<std::string> positional;
  try {
    po::command_line_parser parser(args);
    parser.options(options).style(style::unix_style & ~style::allow_guessing);
    if (extra_parser) parser.extra_style_parser(extra_parser);
    po::parsed_options parsed = parser.run();
    // Positional arguments are taken here rather than through a hidden
    // option, which a user could otherwise set as --name.
    std::erase_if(parsed.options, [&](const po::option& option) {
      if (option.position_key == -1) return false;
      positional.insert(positional.end(), option.value.begin(), option.value.end());
      return true;
    });
    po::variables_map values;
    po::store(parsed, values);
    po::notify(values);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return positional;
}

}  // namespace packlock::cli

namespace packlock {

void validate(boost::any& value, const std::vector<std::string>& tokens, StalePolicy*, int) {
  const std::string& token = cli::single_token(value, tokens);
  if (token == "safe") {
    value = StalePolicy::safe;
  } else if (token == "mtime") {
    value = StalePolicy::mtime;
  } else {
    throw cli::InvalidValue(token, "expected safe or mtime");
  }
}

}  // namespace packlock
