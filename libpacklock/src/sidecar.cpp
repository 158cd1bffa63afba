#include "sidecar.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include <packlock/error.hpp>

#include "fork.hpp"

namespace packlock::detail {

int open_path_no_symlinks(const char* path, int flags, mode_t mode) noexcept {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_NO_SYMLINKS;
  const long fd = ::syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
  if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
  return ::open(path, flags, mode);
}

namespace {

std::error_code last_os_error() noexcept { return {errno, std::system_category()}; }

// openat(2), but a whole path (dir_fd AT_FDCWD) is resolved without
// following a symlink anywhere in it (open_path_no_symlinks).
int open_path(int dir_fd, const char* name, int flags, mode_t mode) noexcept {
  if (dir_fd != AT_FDCWD) return ::openat(dir_fd, name, flags, mode);
  return open_path_no_symlinks(name, flags, mode);
}

int open_directory(const std::filesystem::path& pack) noexcept {
  return ::open(pack.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

// The pack path is a symbolic link whose target does not exist.
bool is_dangling_link(const std::filesystem::path& pack) noexcept {
  struct stat link{}, target{};
  return ::lstat(pack.c_str(), &link) == 0 && S_ISLNK(link.st_mode) &&
         ::stat(pack.c_str(), &target) != 0 && errno == ENOENT;
}

// Errors that mean "something is at the sidecar's name but it is not a
// regular file we may open": a symlink (ELOOP under O_NOFOLLOW), a directory
// (EISDIR for O_RDWR), a socket (ENXIO).
bool means_not_regular(int err) noexcept {
  return err == ELOOP || err == EISDIR || err == ENXIO;
}

}  // namespace

UniqueFd open_pack_directory(const std::filesystem::path& pack, bool create,
                             std::error_code& ec) noexcept {
  ec.clear();
  UniqueFd dir(open_directory(pack));
  if (!dir && errno == ENOENT && is_dangling_link(pack)) {
    ec = make_error_code(errc::dangling_pack_link);
    return {};
  }
  if (!dir && errno == ENOENT && create) {
    std::filesystem::create_directories(pack, ec);
    if (ec) return {};
    dir = UniqueFd(open_directory(pack));
  }
  if (!dir) ec = last_os_error();
  return dir;
}

std::filesystem::path canonical_directory_path(int dir_fd, const std::filesystem::path& spelled,
                                               std::error_code& ec) {
  ec.clear();
  // The descriptor's own path is race-free: it names what we opened, even if
  // the spelled path has changed since.
  std::array<char, 4096> target{};
  const std::string link = "/proc/self/fd/" + std::to_string(dir_fd);
  const ssize_t n = ::readlink(link.c_str(), target.data(), target.size() - 1);
  if (n > 0 && target[0] == '/') return std::filesystem::path(std::string(target.data(), n));
  return std::filesystem::canonical(spelled, ec);
}

Sidecar open_sidecar(int dir_fd, const std::string& name, bool create,
                     std::error_code& ec) noexcept {
  ec.clear();
  // O_NONBLOCK: opening a FIFO planted at the name must not hang before the
  // fstat below can refuse it; it changes nothing for a regular file.
  const int common = O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | (create ? O_CREAT : 0);
  Sidecar sidecar;
  sidecar.fd = UniqueFd(open_path(dir_fd, name.c_str(), O_RDWR | common, 0666));
  sidecar.writable = static_cast<bool>(sidecar.fd);
  if (!sidecar.fd && (errno == EACCES || errno == EROFS)) {
    // flock needs no write access: a reader of a shared pack still locks.
    sidecar.fd = UniqueFd(open_path(dir_fd, name.c_str(), O_RDONLY | common, 0666));
  }
  if (!sidecar.fd) {
    const int err = errno;
    ec = means_not_regular(err) ? make_error_code(errc::not_a_regular_file)
                                : std::error_code(err, std::system_category());
    // A directory that exists (it still has a link) but whose filesystem
    // answers ENOENT to a creation: /proc, /sys.
    struct stat dir{};
    if (err == ENOENT && create && ::fstat(dir_fd, &dir) == 0 && dir.st_nlink > 0) {
      ec = make_error_code(errc::sidecar_unsupported);
    }
    return {};
  }
  struct stat st{};
  if (::fstat(sidecar.fd.get(), &st) != 0) {
    ec = last_os_error();
    return {};
  }
  if (!S_ISREG(st.st_mode)) {
    ec = make_error_code(errc::not_a_regular_file);
    return {};
  }
  sidecar.dev = st.st_dev;
  sidecar.ino = st.st_ino;
  sidecar.epoch = descriptor_epoch();
  return sidecar;
}

std::chrono::system_clock::time_point to_time_point(const struct statx_timestamp& t) noexcept {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec)));
}

namespace {

// statx(2) of `where` asking for `mask`: true when it names (dev, ino).
// With a whole path, one that cannot be looked at (EACCES once the
// process changed its credentials, ENAMETOOLONG) says nothing: the name
// in the directory descriptor answers instead. Only a path that leads
// nowhere, or to another inode, says no.
bool statx_names(const SidecarPath& where, unsigned mask, dev_t dev, ino_t ino,
                 struct statx& st) noexcept {
  int rc = -1;
  if (where.whole) {
    rc = ::statx(AT_FDCWD, where.whole->c_str(), AT_SYMLINK_NOFOLLOW, mask, &st);
    if (rc != 0 && (errno == ENOENT || errno == ENOTDIR)) return false;
  }
  if (rc != 0 && ::statx(where.dir_fd, where.name.c_str(), AT_SYMLINK_NOFOLLOW, mask, &st) != 0) {
    return false;
  }
  return (st.stx_mask & STATX_INO) && st.stx_ino == ino &&
         makedev(st.stx_dev_major, st.stx_dev_minor) == dev;
}

}  // namespace

bool path_names_inode(const SidecarPath& where, dev_t dev, ino_t ino) noexcept {
  // The inode number alone: asking for timestamps would mark them as
  // queried (multigrain timestamps, Linux 6.13+), and the holder's next
  // write would then have to dirty the inode for a fine-grained mtime.
  struct statx st {};
  return statx_names(where, STATX_INO, dev, ino, st);
}

bool path_names_inode(int dir_fd, const std::string& name, dev_t dev, ino_t ino) noexcept {
  return path_names_inode(SidecarPath{dir_fd, name, nullptr}, dev, ino);
}

bool path_names_sidecar(const SidecarPath& where, Sidecar& sidecar, bool see_mtime) noexcept {
  sidecar.seen = {};
  // An exclusive holder writes its record whatever the mtime, and the write
  // is cheapest when nobody queried the timestamps since the last one.
  if (!see_mtime) return path_names_inode(where, sidecar.dev, sidecar.ino);
  // A shared holder refreshes the mtime by a syscall only when it has aged
  // (Hold::mtime_still_fresh), so asking for it here costs rarely.
  struct statx st {};
  constexpr unsigned kSeen = STATX_SIZE | STATX_MTIME;
  if (!statx_names(where, STATX_INO | kSeen, sidecar.dev, sidecar.ino, st)) return false;
  if ((st.stx_mask & kSeen) == kSeen) {
    sidecar.seen.size = static_cast<std::int64_t>(st.stx_size);
    sidecar.seen.mtime = to_time_point(st.stx_mtime);
  }
  return true;
}

}  // namespace packlock::detail
