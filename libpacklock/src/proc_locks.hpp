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

// True when process `pid` has a descriptor whose flock(2) lock on (dev, ino)
// the kernel grants (/proc/PID/fdinfo: its "lock:" lines), or when that
// cannot be told (another user's process, without privilege); false when
// the process is gone or none of its descriptors holds the lock.
bool keeps_lock(pid_t pid, dev_t dev, ino_t ino) noexcept;

// The processes of this host that keep such a descriptor: when the pid
// /proc/locks names has exited, the descriptors it passed on (a fork, a
// daemonised child) still hold the lock. Reads every process's descriptors
// that name the inode; the processes it may not read are left out.
std::vector<pid_t> processes_keeping_lock(dev_t dev, ino_t ino);

}  // namespace packlock::detail
