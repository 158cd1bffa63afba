#pragma once
// How a PackLock keeps its holds alive and judges other holders: the
// heartbeat, the stale period and policy, and the logger that hears about
// it. See SPEC section 1 and man/libpacklock.3.

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <packlock/sidecar_name.hpp>

namespace packlock {

// What an acquirer may do with a busy lock whose sidecar mtime is older
// than the stale period.
//   safe:  recover it only when no process of this host holds it as the
//          kernel's lock table (/proc/locks) shows: a stopped holder or a
//          foreign flock(1) holder is never robbed; a holder on another host
//          of a network filesystem, invisible here, is.
//   mtime: the age of the mtime alone decides, as the Go flock package does.
enum class StalePolicy { safe, mtime };

constexpr std::string_view to_string(StalePolicy policy) noexcept {
  return policy == StalePolicy::safe ? "safe" : "mtime";
}

enum class LogEventKind {
  hijacked,             // a hold's sidecar path no longer names its inode: the lock is lost
  refresh_failed,       // a heartbeat could not refresh the sidecar's mtime (EROFS, EIO, ...)
  stale_recovered,      // this process unlinked a stale sidecar to take the lock
  stale_not_recovered,  // a stale lock was left alone: the policy protects its holder
  record_failed,        // the owner record could not be written or cleared
  read_only,            // held through a read-only descriptor: no record, no heartbeat
};

constexpr std::string_view to_string(LogEventKind kind) noexcept {
  switch (kind) {
    case LogEventKind::hijacked: return "hijacked";
    case LogEventKind::refresh_failed: return "refresh_failed";
    case LogEventKind::stale_recovered: return "stale_recovered";
    case LogEventKind::stale_not_recovered: return "stale_not_recovered";
    case LogEventKind::record_failed: return "record_failed";
    case LogEventKind::read_only: return "read_only";
  }
  return "unknown";
}

struct LogEvent {
  LogEventKind kind;
  std::filesystem::path pack;  // the canonical pack directory
  std::string message;         // one line for humans, without the pack path
  std::error_code error;       // the cause, when there is one
};

// Called from the acquiring thread (stale_*, record_failed, read_only) or
// from the heartbeat thread (hijacked, refresh_failed); it must be
// thread-safe and should return quickly. Whatever it throws is dropped.
using Logger = std::function<void(const LogEvent&)>;

struct LockOptions {
  // A holder whose sidecar mtime is older than this is stale to this
  // process (a reader uses the larger of this and the holder's own, from
  // its owner record). Must be longer than `heartbeat`.
  // 0: not given, derived from `heartbeat` (see resolved_timing()).
  std::chrono::nanoseconds stale_after{0};
  // How often the holds taken through this PackLock refresh their mtime.
  // 0: not given, derived from `stale_after` (see resolved_timing()).
  std::chrono::nanoseconds heartbeat{0};
  StalePolicy stale_policy = StalePolicy::safe;
  Logger logger;  // none: silent; packlock never writes to a default sink
  bool create = true;  // create the pack directory and the sidecar if missing
  std::string sidecar_name = kDefaultSidecarName;
  // The command line in the owner record; default: /proc/self/cmdline,
  // arguments separated by spaces. Truncated to 256 bytes either way.
  std::optional<std::string> command;
  // false: the record says "command":"" instead, for command lines that
  // carry what other users of the pack must not read. The record is
  // cleared at release either way.
  bool record_command = true;
  // The real-time signal that ends a wait in flock(2) early (a deadline, a
  // cancellation, a sidecar replaced meanwhile); it is directed at the
  // waiting thread alone. 0: the one PACKLOCK_WAIT_SIGNAL names ("RTMIN+N",
  // "RTMAX-N" or a number), else SIGRTMAX-3. Its handler is installed at
  // the first wait, never over a disposition of the application's: a wait
  // then fails with errc::wait_signal_taken. See libpacklock(3).
  int wait_signal = 0;
};

inline constexpr std::chrono::nanoseconds kDefaultStaleAfter = std::chrono::seconds(30);
inline constexpr std::chrono::nanoseconds kDefaultHeartbeat = std::chrono::seconds(10);

// The heartbeat and stale period in force, following what was given:
// neither: 10 s and 30 s; only stale_after S: a heartbeat of
// min(10 s, S/3); only heartbeat H: a stale period of max(30 s, 3H); both:
// as given (open() refuses a heartbeat that is not shorter).
struct Timing {
  std::chrono::nanoseconds heartbeat;
  std::chrono::nanoseconds stale_after;
};
constexpr Timing resolved_timing(std::chrono::nanoseconds heartbeat,
                                 std::chrono::nanoseconds stale_after) noexcept {
  const bool given_heartbeat = heartbeat.count() != 0;
  const bool given_stale_after = stale_after.count() != 0;
  if (!given_heartbeat && !given_stale_after) return {kDefaultHeartbeat, kDefaultStaleAfter};
  if (!given_heartbeat) return {std::min(kDefaultHeartbeat, stale_after / 3), stale_after};
  if (!given_stale_after) return {heartbeat, std::max(kDefaultStaleAfter, 3 * heartbeat)};
  return {heartbeat, stale_after};
}

}  // namespace packlock
