#pragma once
// What probe, status and run's waiting line say about a pack: its state,
// its holders and waiters with their commands, as text and as JSON.
//
// Built from packlock::observe() (the kernel's lock table, the owner record
// and the sidecar's mtime) alone; it reads, never creates or locks anything.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include <packlock/mode.hpp>
#include <packlock/owner.hpp>

namespace packlock::cli {

// stale: held by a holder that wrote an owner record and whose heartbeat
// (the sidecar's mtime) is older than the stale period.
enum class PackState { free, held, stale, missing };

struct Party {
  pid_t pid = 0;
  Mode mode = Mode::exclusive;
  std::string command;  // from /proc/PID/cmdline; empty when unreadable
  bool exited = false;  // a holder whose process is gone (see PackView::keepers)
};

struct PackView {
  std::filesystem::path pack;  // as the user spelled it, or as status found it
  PackState state = PackState::free;
  std::optional<Mode> mode;    // of the holders; none when free or not visible
  std::vector<Party> holders;
  std::vector<Party> waiters;
  // When a holder has exited: the processes whose descriptors keep its lock.
  std::vector<Party> keepers;
  // The holder's owner record, when the kernel confirms it (see observe()).
  std::optional<OwnerRecord> owner;
  std::optional<std::chrono::nanoseconds> held_for;       // since owner->acquired_at
  std::optional<std::chrono::nanoseconds> heartbeat_age;  // age of the sidecar's mtime
  bool mtime_skewed = false;                  // the mtime is in the future
  std::chrono::nanoseconds stale_period{};    // what the holder was judged by
  unsigned long links = 0;                    // hard links of the sidecar
};

// The view of `pack`, whose holder is stale when its heartbeat is older
// than `stale_after` (or its own record's stale period, if longer). With
// `try_lock`, a lock the kernel table shows free is tried (see
// ObserveOptions::try_lock): never created, never recovered. A missing pack
// directory is PackState::missing, not an error; a pack without a sidecar
// is free. Errors: those of observe().
PackView view_pack(const std::filesystem::path& pack, std::chrono::nanoseconds stale_after,
                   std::error_code& ec, bool try_lock = false);

// The command line of a process, arguments separated by spaces and control
// characters made spaces, at most `limit` characters; empty when it cannot
// be read.
std::string command_of(pid_t pid, std::size_t limit = 4096);

// `text`, or its first `limit` - 3 characters and "...".
std::string shorten(const std::string& text, std::size_t limit);

std::string_view to_string(PackState state) noexcept;

// "exclusive by 1234 (sleep 100)", "shared by 1234 (a), 1240 (b)", or
// "by a holder not visible on this host" when the kernel table shows none.
std::string describe_holders(const PackView& view);

// " on build1, held for 3m 2s, heartbeat 1.5s ago", from the owner record
// and the mtime, to follow describe_holders(); ", owner unknown (no owner
// record)" when owner_unknown(); else "".
std::string describe_owner(const PackView& view);

// An exclusive holder that wrote no owner record, or none that can be
// believed: a foreign flock(1), a record torn or left by a crash. (Shared
// holders write none: theirs is not unknown, just not recorded.)
bool owner_unknown(const PackView& view);

// "shares its lock with 2 other hard links", or "" for a single link.
std::string describe_links(const PackView& view);

// "/srv/pack: held exclusive by 1234 (sleep 100) on build1, held for 3s,
// heartbeat 1s ago; 1 waiting"
std::string describe(const PackView& view);

// {"pid", "host", "mode", "command", "acquired_at"}, or null.
nlohmann::ordered_json owner_json(const std::optional<OwnerRecord>& owner);
// Whole milliseconds, or null.
nlohmann::ordered_json milliseconds_or_null(const std::optional<std::chrono::nanoseconds>& duration);

// {"pack", "state", "mode", "holders": [{"pid", "mode", "command"}],
//  "waiters": [...], "owner": {"pid", "host", "mode", "command",
//  "acquired_at"} or null, "held_for_ms", "heartbeat_age_ms",
//  "mtime_skewed", "stale_after_ms", "links"}
nlohmann::ordered_json to_json(const PackView& view);

}  // namespace packlock::cli
