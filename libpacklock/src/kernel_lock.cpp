#include "kernel_lock.hpp"

#include <sys/file.h>

#include <cerrno>

namespace packlock::detail {
namespace {

int flock_nonblocking(int fd, Mode mode) noexcept {
  const int operation = (mode == Mode::exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB;
  int rc;
  do {
    rc = ::flock(fd, operation);
  } while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

}  // namespace

Attempt attempt_kernel_lock(const Pack& pack, Sidecar& sidecar, Mode mode,
                            std::error_code& ec) noexcept {
  ec.clear();
  for (;;) {
    const int err = flock_nonblocking(sidecar.fd.get(), mode);
    if (err == EWOULDBLOCK) return Attempt::busy;
    if (err != 0) {
      ec.assign(err, std::system_category());
      return Attempt::failed;
    }
    if (pack.path_names(sidecar)) return Attempt::locked;
    // Ghost: closing drops the lock on the orphaned inode.
    sidecar = pack.open_sidecar(ec);
    if (ec) return Attempt::failed;
  }
}

}  // namespace packlock::detail
