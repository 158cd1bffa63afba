#include "contention.hpp"

#include <sys/file.h>

#include <algorithm>
#include <cerrno>

#include <packlock/error.hpp>

#include "stale.hpp"

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

// The earlier of two optional instants.
Deadline earliest(const Deadline& a, const Deadline& b) noexcept {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

bool cancelled(const ContendRequest& request) noexcept {
  return request.cancel && request.cancel->cancelled();
}

bool expired(const ContendRequest& request) noexcept {
  return request.deadline && Clock::now() >= *request.deadline;
}

// One contention on a pack's sidecar, which it owns while it attempts. Not
// thread-safe.
class SidecarContention final {
 public:
  SidecarContention(const Pack& pack, const ContendRequest& request) noexcept
      : pack_(pack), request_(request), recovery_(pack) {}

  Sidecar run(std::error_code& ec) noexcept {
    sidecar_ = pack_.take_sidecar(ec);
    if (ec) return {};
    return contend_on(*this, request_, ec) == Step::locked ? std::move(sidecar_) : Sidecar();
  }

  // The steps contend_on() drives.
  Step attempt(std::error_code& ec) noexcept {
    const int err = flock_nonblocking(sidecar_.fd.get(), request_.mode);
    if (err == EWOULDBLOCK) return Step::busy;
    if (err != 0) {
      ec.assign(err, std::system_category());
      return Step::failed;
    }
    return guard(ec);
  }

  Step after_busy(std::error_code& ec) noexcept {
    if (request_.steal) return seize(ec);
    // A wait that is over recovers nothing; a try recovers once.
    if (wait_is_over(request_) || (!request_.may_wait && recovered_)) return Step::busy;
    switch (recovery_.after_busy(sidecar_, request_.mode)) {
      case Recovery::locked: return Step::locked;
      case Recovery::retry:
        recovered_ = true;
        return reopen(ec);
      case Recovery::none: break;
    }
    return Step::busy;
  }

  Step wait(std::error_code& ec) noexcept {
    if (request_.mode == Mode::exclusive) pack_.record_writer().prepare();
    const Deadline wake_at = earliest(request_.deadline, recovery_.next_check());
    WaitInterrupt* const interrupt = request_.cancel ? &request_.cancel->interrupt() : nullptr;
    switch (wait_in_kernel(sidecar_, request_.mode, wake_at, interrupt, pack_.wait_signal(), ec)) {
      case WaitEnd::granted: return guard(ec);
      case WaitEnd::woken:
        // Unlinked or replaced while we waited: wait on what the path names.
        return pack_.path_names(sidecar_, request_.mode) ? Step::again : reopen(ec);
      case WaitEnd::failed: break;
    }
    pack_.keep_sidecar(std::move(sidecar_));
    return Step::failed;
  }

  void give_up() noexcept { pack_.keep_sidecar(std::move(sidecar_)); }

 private:
  // Follows the path to the sidecar it names now.
  Step reopen(std::error_code& ec) noexcept {
    sidecar_ = pack_.open_sidecar(ec);
    return ec ? Step::failed : Step::again;
  }

  // The ghost-lock guard of a granted lock: the path must still name the
  // inode. Closing a ghost drops its lock.
  Step guard(std::error_code& ec) noexcept {
    return pack_.path_names(sidecar_, request_.mode) ? Step::locked : reopen(ec);
  }

  // A steal: the guarded unlink of a sidecar whose holder will be told,
  // then an attempt on the fresh one.
  Step seize(std::error_code& ec) noexcept {
    if (rounds_++ == kStealRounds) return Step::busy;
    int unlink_error = 0;
    const auto told = [&]() noexcept { return holder_will_be_told(sidecar_); };
    switch (unlink_busy_sidecar(pack_, sidecar_, request_.mode, told, unlink_error)) {
      case Recovery::locked: return Step::locked;
      case Recovery::retry: return reopen(ec);
      case Recovery::none: break;
    }
    if (unlink_error != 0) {
      pack_.keep_sidecar(std::move(sidecar_));
      ec.assign(unlink_error, std::system_category());
      return Step::failed;
    }
    return Step::busy;
  }

  const Pack& pack_;
  const ContendRequest& request_;
  StaleRecovery recovery_;
  Sidecar sidecar_;
  bool recovered_ = false;
  int rounds_ = 0;
};

}  // namespace

std::error_code stop_reason(const ContendRequest& request) noexcept {
  if (!request.may_wait || request.steal) return errc::busy;
  if (cancelled(request)) return errc::cancelled;
  if (expired(request)) return errc::timeout;
  return {};
}

bool wait_is_over(const ContendRequest& request) noexcept {
  return cancelled(request) || expired(request);
}

Sidecar contend(const Pack& pack, const ContendRequest& request, std::error_code& ec) noexcept {
  ec.clear();
  return SidecarContention(pack, request).run(ec);
}

}  // namespace packlock::detail
