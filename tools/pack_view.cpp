#include "pack_view.hpp"

#include <cerrno>
#include <fstream>
#include <iterator>

#include <packlock/observe.hpp>

namespace packlock::cli {
namespace {

// Commands in one-line descriptions are cut here; JSON has them whole.
constexpr std::size_t kShortCommand = 100;

std::vector<Party> parties(const std::vector<LockParty>& seen) {
  std::vector<Party> out;
  out.reserve(seen.size());
  for (const LockParty& party : seen) out.push_back({party.pid, party.mode, command_of(party.pid)});
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
  if (!party.command.empty()) text += " (" + shorten(party.command, kShortCommand) + ")";
  return text;
}

using Json = nlohmann::ordered_json;

// null rather than "" for what could not be read.
Json string_or_null(const std::string& text) { return text.empty() ? Json() : Json(text); }

Json party_json(const Party& party) {
  return {{"pid", party.pid},
          {"mode", to_string(party.mode)},
          {"command", string_or_null(party.command)}};
}

Json parties_json(const std::vector<Party>& list) {
  Json out = Json::array();
  for (const Party& party : list) out.push_back(party_json(party));
  return out;
}

}  // namespace

PackView view_pack(const std::filesystem::path& pack, std::error_code& ec) {
  PackView view;
  view.pack = pack;
  const PackObservation seen = observe(pack, ec);
  if (ec == std::errc::no_such_file_or_directory && !seen.sidecar_exists) {
    ec.clear();
    view.state = PackState::missing;
    return view;
  }
  if (ec) return view;
  view.holders = parties(seen.holders);
  view.waiters = parties(seen.waiters);
  view.mode = mode_of(view.holders);
  view.state = view.holders.empty() ? PackState::free : PackState::held;
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
    case PackState::missing: return "missing";
  }
  return "unknown";
}

std::string describe_holders(const PackView& view) {
  if (view.holders.empty()) return "by a holder not visible on this host";
  std::string text = std::string(to_string(*view.mode)) + " by ";
  for (std::size_t i = 0; i < view.holders.size(); ++i) {
    if (i > 0) text += ", ";
    text += describe_party(view.holders[i]);
  }
  return text;
}

std::string describe(const PackView& view) {
  std::string text = view.pack.string() + ": " + std::string(to_string(view.state));
  if (view.state == PackState::held) text += " " + describe_holders(view);
  if (!view.waiters.empty()) text += "; " + std::to_string(view.waiters.size()) + " waiting";
  return text;
}

nlohmann::ordered_json to_json(const PackView& view) {
  return {{"pack", view.pack.string()},
          {"state", to_string(view.state)},
          {"mode", view.mode ? Json(to_string(*view.mode)) : Json()},
          {"holders", parties_json(view.holders)},
          {"waiters", parties_json(view.waiters)}};
}

}  // namespace packlock::cli
