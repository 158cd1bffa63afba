#include "proc_locks.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <string>

#include "unique_fd.hpp"

namespace packlock::detail {
namespace {

// Splits off the next space-separated token of `rest`.
std::string_view next_token(std::string_view& rest) noexcept {
  const auto begin = rest.find_first_not_of(' ');
  if (begin == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(begin);
  const auto end = rest.find(' ');
  const std::string_view token = rest.substr(0, end);
  rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  return token;
}

template <typename T>
bool parse_number(std::string_view text, T& value, int base = 10) noexcept {
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  return ec == std::errc() && ptr == text.data() + text.size();
}

KernelLock::Kind kind_of(std::string_view token) noexcept {
  if (token == "FLOCK") return KernelLock::Kind::flock;
  if (token == "POSIX") return KernelLock::Kind::posix;
  if (token == "OFDLCK") return KernelLock::Kind::ofd;
  return KernelLock::Kind::other;
}

// "fe:00:10952772": device major and minor in hex, inode in decimal.
bool parse_identity(std::string_view text, KernelLock& lock) noexcept {
  const auto first = text.find(':');
  const auto second = text.find(':', first == std::string_view::npos ? first : first + 1);
  if (first == std::string_view::npos || second == std::string_view::npos) return false;
  return parse_number(text.substr(0, first), lock.dev_major, 16) &&
         parse_number(text.substr(first + 1, second - first - 1), lock.dev_minor, 16) &&
         parse_number(text.substr(second + 1), lock.ino);
}

}  // namespace

bool parse_proc_locks_line(std::string_view line, KernelLock& lock) noexcept {
  lock = KernelLock{};
  std::string_view rest = line;
  next_token(rest);  // "N:"
  std::string_view token = next_token(rest);
  if (token == "->") {
    lock.blocked = true;
    token = next_token(rest);
  }
  lock.kind = kind_of(token);
  next_token(rest);  // ADVISORY / MANDATORY / ACCESS / ...
  const std::string_view access = next_token(rest);
  if (access != "READ" && access != "WRITE") return false;
  lock.write = access == "WRITE";
  const std::string_view end_token = (parse_number(next_token(rest), lock.pid) &&
                                      parse_identity(next_token(rest), lock) &&
                                      parse_number(next_token(rest), lock.start))
                                         ? next_token(rest)
                                         : std::string_view{};
  if (end_token == "EOF") return true;
  return parse_number(end_token, lock.end);
}

namespace {

bool on_inode(const KernelLock& lock, dev_t dev, ino_t ino) noexcept {
  return lock.ino == ino && lock.dev_major == major(dev) && lock.dev_minor == minor(dev);
}

// Splits `text` into lines and calls `line` on each, until it returns true.
template <typename OnLine>
void for_each_line(std::string_view text, OnLine line) {
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view current = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (line(current)) return;
  }
}

bool same_lock(const KernelLock& a, const KernelLock& b) noexcept {
  return a.kind == b.kind && a.write == b.write && a.blocked == b.blocked && a.pid == b.pid &&
         a.start == b.start && a.end == b.end;
}

// One pass over the table: the locks on (dev, ino), and how many reads the
// table took.
std::vector<KernelLock> read_locks_on(dev_t dev, ino_t ino, int& reads, std::error_code& ec) {
  reads = 0;
  const UniqueFd fd(::open("/proc/locks", O_RDONLY | O_CLOEXEC));
  if (!fd) {
    ec.assign(errno, std::system_category());
    return {};
  }
  std::string table;
  std::array<char, 16384> chunk;
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ++reads;
    table.append(chunk.data(), static_cast<std::size_t>(n));
  }
  std::vector<KernelLock> found;
  KernelLock lock;
  for_each_line(table, [&](std::string_view line) {
    if (parse_proc_locks_line(line, lock) && on_inode(lock, dev, ino)) found.push_back(lock);
    return false;
  });
  return found;
}

}  // namespace

// The kernel hands /proc/locks out a page per read and lets go of its lock
// table between reads, resuming at a position: a lock listed before that
// position that comes or goes meanwhile makes the next read repeat a lock
// or skip one. (Measured: a holder's lock behind 300 others, with a process
// on each CPU taking and dropping 60 more in a loop, was listed wrongly by
// 28-41% of single passes: twice, up to 57 times, or not at all; with the
// rest of the test suite running beside it, two passes together still
// missed it in 4 of 1,000 observations.) So a table that took more than one
// read is read again, and a lock seen in any pass counts, until a pass
// after the first has shown a lock held (not waited for) on the inode, or
// kPasses passes found none: a holder stays hidden only if every pass
// skips it. A lock seen twice in one pass can remain; callers that list
// processes merge them.
std::vector<KernelLock> kernel_locks_on(dev_t dev, ino_t ino, std::error_code& ec) {
  constexpr int kPasses = 8;
  ec.clear();
  int reads = 0;
  std::vector<KernelLock> found = read_locks_on(dev, ino, reads, ec);
  if (ec || reads <= 1) return found;
  for (int pass = 1; pass < kPasses; ++pass) {
    std::error_code again_ec;
    bool held = false;
    for (const KernelLock& lock : read_locks_on(dev, ino, reads, again_ec)) {
      held |= !lock.blocked;
      const auto seen = [&](const KernelLock& other) { return same_lock(lock, other); };
      if (std::none_of(found.begin(), found.end(), seen)) found.push_back(lock);
    }
    if (held || again_ec) break;
  }
  return found;
}

namespace {

// "lock:\t1: FLOCK  ADVISORY  WRITE 4242 fe:00:12 0 EOF" lines of one
// descriptor's fdinfo: true when one is a granted flock on (dev, ino).
bool fdinfo_holds(const std::string& path, dev_t dev, ino_t ino) noexcept {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  std::array<char, 4096> text;
  const ssize_t n = ::read(fd.get(), text.data(), text.size());
  if (n <= 0) return false;
  constexpr std::string_view kPrefix = "lock:";
  bool holds = false;
  KernelLock lock;
  for_each_line(std::string_view(text.data(), static_cast<std::size_t>(n)),
                [&](std::string_view line) {
                  if (line.substr(0, kPrefix.size()) != kPrefix) return false;
                  holds = parse_proc_locks_line(line.substr(kPrefix.size()), lock) &&
                          lock.kind == KernelLock::Kind::flock && !lock.blocked &&
                          on_inode(lock, dev, ino);
                  return holds;
                });
  return holds;
}

enum class Keeps { yes, no, unknown };

// Whether a descriptor of the process at /proc/PID names (dev, ino) and
// holds its lock. The stat of /proc/PID/fd/N spares reading the fdinfo of
// descriptors of other files. Another user's process cannot be looked
// into without privilege: unknown.
Keeps process_keeps(const std::string& process, dev_t dev, ino_t ino) noexcept try {
  std::error_code ec;
  std::filesystem::directory_iterator fd(process + "/fd", ec);
  if (ec) return ec == std::errc::no_such_file_or_directory ? Keeps::no : Keeps::unknown;
  for (const std::filesystem::directory_iterator end; !ec && fd != end; fd.increment(ec)) {
    struct stat st {};
    if (::stat(fd->path().c_str(), &st) != 0 || st.st_dev != dev || st.st_ino != ino) continue;
    if (fdinfo_holds(process + "/fdinfo/" + fd->path().filename().string(), dev, ino)) {
      return Keeps::yes;
    }
  }
  return Keeps::no;
} catch (...) {
  return Keeps::unknown;
}

}  // namespace

bool keeps_lock(pid_t pid, dev_t dev, ino_t ino) noexcept try {
  return process_keeps("/proc/" + std::to_string(pid), dev, ino) != Keeps::no;
} catch (...) {
  return true;  // cannot tell: not called exited
}

std::vector<pid_t> processes_keeping_lock(dev_t dev, ino_t ino) {
  std::vector<pid_t> keepers;
  std::error_code ec;
  for (std::filesystem::directory_iterator entry("/proc", ec), end; !ec && entry != end;
       entry.increment(ec)) {
    const std::string name = entry->path().filename().string();
    pid_t pid = 0;
    if (!parse_number(name, pid) || pid <= 0) continue;
    if (process_keeps(entry->path().string(), dev, ino) == Keeps::yes) keepers.push_back(pid);
  }
  std::sort(keepers.begin(), keepers.end());
  return keepers;
}

}  // namespace packlock::detail
