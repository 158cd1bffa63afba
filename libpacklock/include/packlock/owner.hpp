#pragma once
// The owner record: a note an exclusive holder writes into the sidecar
// right after acquiring, saying who holds the pack and how it heartbeats.
// It is for humans and for liveness checks, never the truth: the kernel lock
// is. A record is believed only while the lock is held and, on a local
// filesystem, only when its pid is among the holders the kernel shows
// (observe() applies that rule); a record left by an earlier holder
// describes nobody.
//
// On disk the record is the sidecar's first line, one JSON object of at
// most 4 KiB, padded with spaces:
//   {"version":1,"pid":4242,"host":"build1","boot_id":"...",
//    "pid_namespace":4026531836,"start_time":81234,"mode":"exclusive",
//    "command":"make install","heartbeat_ns":10000000000,
//    "stale_after_ns":30000000000,"acquired_at":"2026-11-22T10:00:00.123456789Z",
//    "token":"<32 hex digits>","check":"<16 hex digits>"}
// `check` is the FNV-1a 64 hash of the line's bytes before `,"check"`: a
// reader that catches a write half done (buffered reads on ext4 and tmpfs do
// not exclude a concurrent write) sees a wrong check, not a wrong owner.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <packlock/mode.hpp>
#include <packlock/sidecar_name.hpp>

namespace packlock {

inline constexpr int kOwnerRecordVersion = 1;
inline constexpr std::size_t kOwnerRecordMaxSize = 4096;

struct OwnerRecord {
  int version = kOwnerRecordVersion;
  pid_t pid = 0;
  std::string host;                 // gethostname(2)
  std::string boot_id;              // /proc/sys/kernel/random/boot_id
  std::uint64_t pid_namespace = 0;  // inode of /proc/self/ns/pid
  std::uint64_t start_time = 0;     // clock ticks after boot (/proc/PID/stat, field 22)
  Mode mode = Mode::exclusive;
  std::string command;              // truncated to 256 bytes
  std::chrono::nanoseconds heartbeat{};
  std::chrono::nanoseconds stale_after{};
  std::chrono::system_clock::time_point acquired_at;
  std::string token;                // 32 hex digits, new for every acquisition
};

// Parses a sidecar's content (its first line). Anything malformed, hostile
// or out of range gives std::nullopt ("unknown owner"): not JSON, a wrong
// version or check, pid 0, negative or beyond 2^22, missing or mistyped
// fields, no newline within 4 KiB. Never throws.
std::optional<OwnerRecord> parse_owner_record(std::string_view content) noexcept;

// Reads at most 4 KiB from offset 0 of `fd` and parses it; a read torn by a
// concurrent write fails its check and is read again (three tries).
std::optional<OwnerRecord> read_owner_record(int fd) noexcept;

// The record in `<pack>/<sidecar_name>`, opened read-only, never through a
// symlink and never created; std::nullopt when it is missing, not a regular
// file, unreadable or malformed.
std::optional<OwnerRecord> read_owner_record(const std::filesystem::path& pack,
                                             const std::string& sidecar_name = kDefaultSidecarName) noexcept;

// The bytes a holder writes for `record`: the JSON line with its check,
// padded with spaces to a multiple of 512 bytes. The command is truncated to
// 256 bytes and invalid UTF-8 replaced. For tools and tests that craft
// records; holders write theirs themselves.
std::string format_owner_record(const OwnerRecord& record);

enum class OwnerLiveness {
  alive,       // the pid runs on this host and started when the record says
  dead,        // no such process on this host (or a zombie)
  pid_reused,  // the pid runs but started at another time: the holder is gone
  other_host,  // written on another host, boot or pid namespace: unknown here
};

constexpr std::string_view to_string(OwnerLiveness liveness) noexcept {
  switch (liveness) {
    case OwnerLiveness::alive: return "alive";
    case OwnerLiveness::dead: return "dead";
    case OwnerLiveness::pid_reused: return "dead (pid reused)";
    case OwnerLiveness::other_host: return "unknown (other host)";
  }
  return "unknown";
}

// Whether the process that wrote `record` still runs, judged by host name,
// boot id, pid namespace, pid and process start time. Conservative in one
// direction only: `alive` may be a process that has since released.
OwnerLiveness liveness_of(const OwnerRecord& record) noexcept;

}  // namespace packlock
