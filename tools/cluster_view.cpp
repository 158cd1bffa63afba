#include "cluster_view.hpp"

#include <cstdio>
#include <sstream>

#include "duration.hpp"
#include "output.hpp"
#include "pack_view.hpp"

namespace packlock::cli {
namespace {

using Json = nlohmann::ordered_json;

// Commands in one-line descriptions are cut here; JSON has them whole.
constexpr std::size_t kShortCommand = 100;
constexpr std::size_t kCommandColumn = 50;

std::string lease_text(std::int64_t lease) {
  char text[24];
  std::snprintf(text, sizeof text, "%llx", static_cast<unsigned long long>(lease));
  return text;
}

// Since the record's time: how long a holder has held, or a waiter waited.
std::optional<std::chrono::nanoseconds> age_of(const ClusterParty& party) {
  if (!party.owner) return std::nullopt;
  const auto age = std::chrono::system_clock::now() - party.owner->acquired_at;
  // A clock set back (or another host's clock ahead) would give a negative age.
  if (age < std::chrono::system_clock::duration::zero()) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(age);
}

// "1234 (make install) on build1", or "key K (no record)" for etcdctl's.
std::string describe_party(const ClusterParty& party) {
  if (!party.owner) return "key " + party.key + " (no record)";
  std::string text = std::to_string(party.owner->pid);
  if (!party.owner->command.empty()) text += " (" + shorten(party.owner->command, kShortCommand) + ")";
  return text + " on " + (party.owner->host.empty() ? "an unnamed host" : party.owner->host);
}

Json party_json(const ClusterParty& party) {
  return {{"key", json_text(party.key)},
          {"mode", to_string(party.mode)},
          {"fencing_token", party.fencing_token},
          {"lease", lease_text(party.lease)},
          {"owner", owner_json(party.owner)},
          {"for_ms", milliseconds_or_null(age_of(party))}};
}

Json parties_json(const std::vector<ClusterParty>& parties) {
  Json list = Json::array();
  for (const ClusterParty& party : parties) list.push_back(party_json(party));
  return list;
}

bool is_held(const ClusterLockView& view) { return !view.holders.empty(); }

// "1234@build1,1240@build2"; "?" for a key without a record.
std::string holders_cell(const ClusterLockView& view) {
  if (view.holders.empty()) return "-";
  std::string text;
  for (const ClusterParty& party : view.holders) {
    if (!text.empty()) text += ',';
    text += party.owner ? std::to_string(party.owner->pid) + "@" + party.owner->host : "?";
  }
  return text;
}

}  // namespace

std::string describe(const ClusterLockView& view) {
  std::string text = view.name + ": ";
  if (!is_held(view)) {
    text += "free";
  } else {
    const ClusterParty& first = view.holders.front();
    text += "held " + std::string(to_string(first.mode)) + " by ";
    for (std::size_t i = 0; i < view.holders.size(); ++i) {
      text += (i == 0 ? "" : ", ") + describe_party(view.holders[i]);
    }
    if (const auto age = age_of(first); age && view.holders.size() == 1) {
      text += " for " + format_duration(*age);
    }
    text += ", fencing token " + std::to_string(first.fencing_token);
  }
  if (!view.waiters.empty()) text += "; " + std::to_string(view.waiters.size()) + " waiting";
  return printable(text);  // names, commands and hosts are anybody's bytes
}

Json to_json(const ClusterLockView& view) {
  return {{"name", json_text(view.name)},
          {"state", is_held(view) ? "held" : "free"},
          {"mode", is_held(view) ? Json(to_string(view.holders.front().mode)) : Json()},
          {"holders", parties_json(view.holders)},
          {"waiters", parties_json(view.waiters)}};
}

std::string table_of(const std::vector<ClusterLockView>& views) {
  std::vector<std::vector<std::string>> rows{
      {"NAME", "STATE", "MODE", "HOLDERS", "WAITERS", "HELD-FOR", "TOKEN", "COMMAND"}};
  for (const ClusterLockView& view : views) {
    const ClusterParty* first = is_held(view) ? &view.holders.front() : nullptr;
    const auto age = first ? age_of(*first) : std::nullopt;
    const std::string command =
        first && first->owner && !first->owner->command.empty() ? first->owner->command : "-";
    rows.push_back({view.name, is_held(view) ? "held" : "free",
                    first ? std::string(to_string(first->mode)) : "-", holders_cell(view),
                    std::to_string(view.waiters.size()), age ? format_duration(*age) : "-",
                    first ? std::to_string(first->fencing_token) : "-",
                    shorten(command, kCommandColumn)});
  }
  std::ostringstream out;
  print_table(out, rows);
  return out.str();
}

}  // namespace packlock::cli
