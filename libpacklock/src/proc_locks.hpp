#pragma once
// Reading the kernel's table of file locks, /proc/locks: who holds and who
// waits for a lock on a given inode, with their pids. It shows the
// processes of this host (of this pid namespace) only: holders on other
// hosts of a network filesystem are invisible here.

#include <sys/types.h>

#include <string_view>
#include <system_error>
#include <vector>

namespace packlock::detail {

struct KernelLock {
  enum class Kind { flock, posix, ofd, other } kind = Kind::other;
  bool write = false;    // WRITE (exclusive) or READ (shared)
  bool blocked = false;  // a "->" line: a process blocked waiting for it
  pid_t pid = 0;         // -1 for OFD locks
  unsigned dev_major = 0, dev_minor = 0;
  ino_t ino = 0;
  long long start = 0;   // byte range; end -1 for EOF
  long long end = -1;
};

// Parses one line; false for a line it does not understand.
bool parse_proc_locks_line(std::string_view line, KernelLock& lock) noexcept;

// The locks on the inode (dev, ino), in /proc/locks order.
std::vector<KernelLock> kernel_locks_on(dev_t dev, ino_t ino, std::error_code& ec);

}  // namespace packlock::detail
