#include "wake_channel.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <string>

namespace packlock::detail {

WakeChannel::WakeChannel(int dir_fd, const std::string& sidecar_name) noexcept {
  const std::string name = sidecar_name + kWakeSuffix;
  ::mkfifoat(dir_fd, name.c_str(), 0666);  // EEXIST is the usual case
  constexpr int flags = O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
  // Read-write only: a read-only end reports POLLHUP whenever no writer
  // has it open, which would turn every wait into a spin. A user who may
  // not write it waits on inotify and the back-off instead.
  // O_NOATIME, where the owner of the FIFO allows it: on a disk filesystem
  // with relatime, the first read after each write would otherwise update
  // the FIFO's atime, a journalled inode update on every drain.
  UniqueFd fifo(::openat(dir_fd, name.c_str(), O_RDWR | O_NOATIME | flags));
  if (!fifo && errno == EPERM) fifo = UniqueFd(::openat(dir_fd, name.c_str(), O_RDWR | flags));
  struct stat st {};
  if (fifo && ::fstat(fifo.get(), &st) == 0 && S_ISFIFO(st.st_mode)) fifo_ = std::move(fifo);
}

void WakeChannel::notify() const noexcept {
  // EAGAIN means the pipe is full of unread bytes: it is readable already.
  if (fifo_) [[maybe_unused]] const auto written = ::write(fifo_.get(), "", 1);
}

bool WakeChannel::drain() const noexcept {
  if (!fifo_) return false;
  std::array<char, 512> buffer;
  bool any = false;
  while (::read(fifo_.get(), buffer.data(), buffer.size()) > 0) any = true;
  return any;
}

}  // namespace packlock::detail
