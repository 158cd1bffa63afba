#pragma once
// The exit codes of every subcommand (sysexits.h, as SPEC section 3 lists
// them), and the one mapping from an error to its code and to the words of
// its error line.

#include <stdexcept>
#include <string>
#include <system_error>

namespace packlock::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;        // EX_USAGE
inline constexpr int kExitNoInput = 66;      // EX_NOINPUT: no such pack
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE: no etcd endpoint answered
inline constexpr int kExitOsError = 71;      // EX_OSERR
inline constexpr int kExitCannotCreate = 73; // EX_CANTCREAT
inline constexpr int kExitConflict = 75;     // EX_TEMPFAIL: run's default for busy / timed out
inline constexpr int kExitNoPermission = 77; // EX_NOPERM
inline constexpr int kExitCannotRun = 126;
inline constexpr int kExitNotFound = 127;
inline constexpr int kExitSignalBase = 128;  // + the signal's number

// probe's states.
inline constexpr int kExitHeld = 1;
inline constexpr int kExitStale = 2;

// ENOENT, ENOTDIR, ENAMETOOLONG, ELOOP: the path names no usable pack (66);
// no etcd endpoint answered: 69; etcd refused TLS or the credentials: 77;
// EACCES, EPERM: 77; a sidecar that is not a regular file, a read-only or
// full file system: the lock file cannot be created there (73); anything
// else (descriptor or memory exhaustion, I/O errors): 71.
int exit_code_for(const std::error_code& ec) noexcept;

// The cause for an error line: the error's message, with the sidecar named
// where the message alone would not say which file is meant.
std::string cause_of(const std::error_code& ec);

// A bad command line. main() prints "packlock SUBCOMMAND: what" and exits 64.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace packlock::cli
