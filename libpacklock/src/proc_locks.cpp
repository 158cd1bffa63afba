#include "proc_locks.hpp"

#include <sys/sysmacros.h>

#include <charconv>
#include <fstream>
#include <string>

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

std::vector<KernelLock> kernel_locks_on(dev_t dev, ino_t ino, std::error_code& ec) {
  ec.clear();
  std::ifstream table("/proc/locks");
  if (!table) {
    ec = std::make_error_code(std::errc::no_such_file_or_directory);
    return {};
  }
  std::vector<KernelLock> found;
  std::string line;
  KernelLock lock;
  while (std::getline(table, line)) {
    if (parse_proc_locks_line(line, lock) && lock.ino == ino && lock.dev_major == major(dev) &&
        lock.dev_minor == minor(dev)) {
      found.push_back(lock);
    }
  }
  return found;
}

}  // namespace packlock::detail
