#include "pack_view.hpp"

#include <ctime>
#include <fstream>
#include <iterator>

#include <packlock/error.hpp>
#include <packlock/observe.hpp>

#include "duration.hpp"
#include "output.hpp"

namespace packlock::cli {
namespace {

// Commands in one-line descriptions are cut here; JSON has them whole.
constexpr std::size_t kShortCommand = 100;

std::vector<Party> parties(const std::vector<LockParty>& seen) {
  std::vector<Party> out;
  out.reserve(seen.size());
  for (const LockParty& party : seen) {
    out.push_back({party.pid, party.mode, party.exited ? "" : command_of(party.pid), party.exited});
  }
  return out;
}

std::vector<Party> keepers_of(const PackObservation& seen, std::optional<Mode> mode) {
  std::vector<Party> out;
  for (const pid_t pid : seen.keepers) {
    out.push_back({pid, mode.value_or(Mode::exclusive), command_of(pid), false});
  }
  return out;
}

// One exclusive holder makes the lock exclusive.
std::optional<Mode> mode_of(const std::vector<Party>& holders) {
  if (holders.empty()) return std::nullopt;
  for (const Party& holder : holders) {
    if (holder.mode == Mode::exclusive) return Mode::exclusive;
  }
  return Mode::shared;
}

std::string describe_party(const Party& party) {
  std::string text = std::to_string(party.pid);
  if (party.exited) return text + " (exited)";
  if (!party.command.empty()) text += " (" + shorten(party.command, kShortCommand) + ")";
  return text;
}

using Json = nlohmann::ordered_json;

// null rather than "" for what could not be read.
Json string_or_null(const std::string& text) {
  return text.empty() ? Json() : Json(json_text(text));
}

PackState state_of(packlock::PackState seen) {
  switch (seen) {
    case packlock::PackState::free: return PackState::free;
    case packlock::PackState::held: return PackState::held;
    case packlock::PackState::stale: return PackState::stale;
  }
  return PackState::held;
}

// "2026-11-22T10:00:00Z": to the second, in UTC, as in the owner record.
std::string utc_time(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm parts{};
  char text[32] = "";
  if (::gmtime_r(&seconds, &parts) == nullptr) return "";
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

Json party_json(const Party& party) {
  return {{"pid", party.pid},
          {"mode", to_string(party.mode)},
          {"command", string_or_null(party.command)},
          {"exited", party.exited}};
}

Json parties_json(const std::vector<Party>& list) {
  Json out = Json::array();
  for (const Party& party : list) out.push_back(party_json(party));
  return out;
}

}  // namespace

nlohmann::ordered_json milliseconds_or_null(const std::optional<std::chrono::nanoseconds>& duration) {
  if (!duration) return Json();
  return std::chrono::duration_cast<std::chrono::milliseconds>(*duration).count();
}

nlohmann::ordered_json owner_json(const std::optional<OwnerRecord>& owner) {
  if (!owner) return Json();
  return {{"pid", owner->pid},
          {"host", json_text(owner->host)},
          {"mode", to_string(owner->mode)},
          {"command", string_or_null(owner->command)},
          {"acquired_at", utc_time(owner->acquired_at)}};
}

PackView view_pack(const std::filesystem::path& pack, std::chrono::nanoseconds stale_after,
                   std::error_code& ec, bool try_lock) {
  PackView view;
  view.pack = pack;
  ObserveOptions options;
  options.stale_after = stale_after;
  options.try_lock = try_lock;
  const PackObservation seen = observe(pack, options, ec);
  if (ec == std::errc::no_such_file_or_directory && ec != errc::dangling_pack_link &&
      !seen.sidecar_exists) {
    ec.clear();
    view.state = PackState::missing;
    return view;
  }
  if (ec) return view;
  view.holders = parties(seen.holders);
  view.waiters = parties(seen.waiters);
  view.mode = mode_of(view.holders);
  view.keepers = keepers_of(seen, view.mode);
  view.state = state_of(seen.state);
  view.owner = seen.owner;
  if (view.owner) view.held_for = std::chrono::system_clock::now() - view.owner->acquired_at;
  view.heartbeat_age = seen.heartbeat_age;
  view.mtime_skewed = seen.mtime_skewed;
  view.stale_period = seen.stale_period;
  view.links = seen.links;
  return view;
}

std::string command_of(pid_t pid, std::size_t limit) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string command;
  char c = 0;
  // Arguments are NUL-separated; a newline or other control character in
  // one would break the one-line outputs.
  while (command.size() < limit && file.get(c)) {
    command += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  }
  while (!command.empty() && command.back() == ' ') command.pop_back();
  return command;
}

std::string shorten(const std::string& text, std::size_t limit) {
  return text.size() <= limit ? text : text.substr(0, limit - 3) + "...";
}

std::string_view to_string(PackState state) noexcept {
  switch (state) {
    case PackState::free: return "free";
    case PackState::held: return "held";
    case PackState::stale: return "stale";
    case PackState::missing: return "missing";
  }
  return "unknown";
}

// "PID (COMMAND), PID (exited), ..."
std::string describe_parties(const std::vector<Party>& parties) {
  std::string text;
  for (const Party& party : parties) text += (text.empty() ? "" : ", ") + describe_party(party);
  return text;
}

std::string describe_holders(const PackView& view) {
  if (view.holders.empty()) return "by a holder not visible on this host";
  std::string text = std::string(to_string(*view.mode)) + " by " + describe_parties(view.holders);
  if (!view.keepers.empty()) text += ", its lock kept by " + describe_parties(view.keepers);
  return text;
}

bool owner_unknown(const PackView& view) {
  const bool locked = view.state == PackState::held || view.state == PackState::stale;
  return locked && !view.owner && view.mode != Mode::shared;
}

std::string describe_owner(const PackView& view) {
  if (owner_unknown(view)) return ", owner unknown (no owner record)";
  if (!view.owner) return "";
  std::string text = " on " + (view.owner->host.empty() ? "an unnamed host" : view.owner->host);
  // A clock set back since the acquisition would give a negative age.
  if (view.held_for && *view.held_for >= std::chrono::nanoseconds::zero()) {
    text += ", held for " + format_duration(*view.held_for);
  }
  if (view.mtime_skewed) {
    text += ", heartbeat in the future (clock skew)";
  } else if (view.heartbeat_age) {
    text += ", heartbeat " + format_duration(*view.heartbeat_age) + " ago";
  }
  return text;
}

std::string describe_links(const PackView& view) {
  if (view.links <= 1) return "";
  const unsigned long others = view.links - 1;
  return "shares its lock with " + std::to_string(others) + " other hard link" +
         (others == 1 ? "" : "s");
}

std::string describe(const PackView& view) {
  std::string text = view.pack.string() + ": " + std::string(to_string(view.state));
  if (view.state == PackState::held || view.state == PackState::stale) {
    text += " " + describe_holders(view);
  }
  text += describe_owner(view);
  if (view.state == PackState::stale) {
    text += " (stale after " + format_duration(view.stale_period) + ")";
  }
  if (!view.waiters.empty()) text += "; " + std::to_string(view.waiters.size()) + " waiting";
  if (const std::string links = describe_links(view); !links.empty()) text += "; " + links;
  return printable(text);  // the path, the commands and the host are anybody's bytes
}

nlohmann::ordered_json to_json(const PackView& view) {
  return {{"pack", json_text(view.pack.string())},
          {"state", to_string(view.state)},
          {"mode", view.mode ? Json(to_string(*view.mode)) : Json()},
          {"holders", parties_json(view.holders)},
          {"waiters", parties_json(view.waiters)},
          {"keepers", parties_json(view.keepers)},
          {"owner", owner_json(view.owner)},
          {"held_for_ms", milliseconds_or_null(view.held_for)},
          {"heartbeat_age_ms", milliseconds_or_null(view.heartbeat_age)},
          {"mtime_skewed", view.mtime_skewed},
          {"stale_after_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                 view.stale_period).count()},
          {"links", view.links}};
}

}  // namespace packlock::cli
