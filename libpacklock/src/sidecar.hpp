#pragma once
// The sidecar file of a pack: opened relative to the pack's directory
// descriptor, never through a symlink, and only if it is a regular file.

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>

#include <filesystem>
#include <string>
#include <system_error>

#include <packlock/sidecar_name.hpp>

#include "unique_fd.hpp"

namespace packlock::detail {

// A statx(2) timestamp on the system clock.
std::chrono::system_clock::time_point to_time_point(const struct statx_timestamp& t) noexcept;

// What the sidecar's path showed at the ghost-lock check of the last
// acquisition: its size and mtime, while the lock was held.
struct SidecarSeen {
  SidecarSeen() noexcept = default;  // time_point's own constructor is not marked so
  std::int64_t size = -1;  // -1: not seen
  std::chrono::system_clock::time_point mtime{};
};

// An open sidecar and the identity (device, inode) of what it names.
struct Sidecar {
  UniqueFd fd;
  dev_t dev = 0;
  ino_t ino = 0;
  bool writable = false;  // false: opened read-only (no record, no heartbeat)
  unsigned epoch = 0;     // descriptor_epoch() when opened
  SidecarSeen seen;
};

// Opens (creating with `create`) the pack directory, following symlinks in
// the pack path: a pack reached through a symlink is the same pack. A
// symlink to nothing gives errc::dangling_pack_link and is never created
// through: its target may be a mount point not mounted yet.
UniqueFd open_pack_directory(const std::filesystem::path& pack, bool create,
                             std::error_code& ec) noexcept;

// The canonical path of an open directory, for the process-wide table key.
std::filesystem::path canonical_directory_path(int dir_fd, const std::filesystem::path& spelled,
                                               std::error_code& ec);

// open(2) of a whole path that follows no symlink anywhere in it
// (openat2 RESOLVE_NO_SYMLINKS): a pack's path is canonical, so a symlink
// in it was planted since, and must not lead a creation or a write
// elsewhere. Kernels before openat2(2) follow all but a last component
// that O_NOFOLLOW covers.
int open_path_no_symlinks(const char* path, int flags, mode_t mode = 0) noexcept;

// Opens `name` in `dir_fd` as SPEC section 1 says: O_NOFOLLOW, never O_TRUNC,
// mode 0666 on creation, read-only when the caller may not write. Anything
// but a regular file gives errc::not_a_regular_file. With dir_fd AT_FDCWD,
// `name` is a whole path, resolved without following any symlink in it.
Sidecar open_sidecar(int dir_fd, const std::string& name, bool create,
                     std::error_code& ec) noexcept;

// Where a sidecar is looked for: `name` in the directory `dir_fd`, or, when
// `whole` is set, that whole path (the pack's canonical path and the name),
// so that the pack path must still lead to the directory as well.
struct SidecarPath {
  int dir_fd;
  const std::string& name;
  const std::string* whole;
};

// True when the sidecar path still names the inode (dev, ino): the
// ghost-lock guard after flock, and the hijack check of a holder.
bool path_names_inode(const SidecarPath& where, dev_t dev, ino_t ino) noexcept;
bool path_names_inode(int dir_fd, const std::string& name, dev_t dev, ino_t ino) noexcept;
// The same check for an acquisition. With `see_mtime` it also records the
// size and mtime the path shows in `sidecar.seen` (one statx(2) all the same).
bool path_names_sidecar(const SidecarPath& where, Sidecar& sidecar, bool see_mtime) noexcept;

}  // namespace packlock::detail
