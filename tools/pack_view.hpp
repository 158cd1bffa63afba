#pragma once
// What probe, status and run's waiting line say about a pack: its state,
// its holders and waiters with their commands, as text and as JSON.
//
// Built from packlock::observe() (the kernel's lock table) alone; it reads,
// never creates or locks anything.

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include <packlock/mode.hpp>

namespace packlock::cli {

enum class PackState { free, held, missing };

struct Party {
  pid_t pid = 0;
  Mode mode = Mode::exclusive;
  std::string command;  // from /proc/PID/cmdline; empty when unreadable
};

struct PackView {
  std::filesystem::path pack;  // as the user spelled it, or as status found it
  PackState state = PackState::free;
  std::optional<Mode> mode;    // of the holders; none when free or not visible
  std::vector<Party> holders;
  std::vector<Party> waiters;
};

// The view of `pack`. A missing pack directory is PackState::missing, not an
// error; a pack without a sidecar is free. Errors: those of observe().
PackView view_pack(const std::filesystem::path& pack, std::error_code& ec);

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

// "/srv/pack: held exclusive by 1234 (sleep 100); 1 waiting"
std::string describe(const PackView& view);

// {"pack", "state", "mode", "holders": [{"pid", "mode", "command"}],
//  "waiters": [...]}
nlohmann::ordered_json to_json(const PackView& view);

}  // namespace packlock::cli
