#pragma once
// Lock names: the strings LockManager accepts as the name of a lock.
//
// A name is a relative path below the manager's lock directory: "build",
// "db/main". It must be 1 to kMaxNameLength bytes of [A-Za-z0-9._/-],
// made of components of 1 to kMaxComponentLength bytes separated by single
// slashes, none of them starting with a dot. So a name never leaves the
// lock directory (no "..", no leading "/"), never names a sidecar
// (".grex-lock") or another hidden file, and never has two spellings
// ("a//b", "a/", "./a" are refused, not normalised).

#include <climits>
#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>

namespace packlock::detail {

// NAME_MAX: the longest directory entry Linux file systems store; a longer
// component could never be created.
inline constexpr std::size_t kMaxComponentLength = NAME_MAX;
// PATH_MAX (4096) bounds every path the kernel accepts. A name may use a
// quarter of it, leaving the rest for the lock directory and the sidecar's
// name, and the bound does not depend on the lock directory, so a name
// valid for one manager is valid for every manager.
inline constexpr std::size_t kMaxNameLength = PATH_MAX / 4;

// errc::invalid_name unless `name` is a lock name as described above.
std::error_code check_lock_name(std::string_view name) noexcept;

inline bool is_lock_name(std::string_view name) noexcept { return !check_lock_name(name); }

// `name` for a message: bytes outside printable ASCII as \xNN, and at most
// 80 bytes of it followed by "...".
std::string printable_name(std::string_view name);

}  // namespace packlock::detail
