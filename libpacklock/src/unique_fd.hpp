#pragma once
// A move-only owner of one file descriptor: every descriptor packlock opens
// lives in one of these, so no early return can leak it.

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace packlock::detail {

class UniqueFd final {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

  // Closes the descriptor; returns close(2)'s errno, 0 on success.
  int reset(int fd = -1) noexcept {
    int err = 0;
    if (fd_ >= 0 && ::close(fd_) != 0) err = errno;
    fd_ = fd;
    return err;
  }

 private:
  int fd_ = -1;
};

}  // namespace packlock::detail
