// TryLock / TryRLock: a thin face over the engine's blocking acquire, with
// a Context's cancellation in place of a timeout alone.

#include <packlock/try_lock.hpp>

#include <fcntl.h>

#include <mutex>

#include <packlock/pack_lock.hpp>

#include "cancellation.hpp"
#include "engine.hpp"
#include "hold.hpp"
#include "pack.hpp"
#include "sidecar.hpp"

namespace packlock {

namespace detail {

struct RootDirectory {
  UniqueFd fd;
  std::filesystem::path path;
};

}  // namespace detail

struct UnlockFunc::State {
  explicit State(PackLockHold held) noexcept : hold(std::move(held)) {}

  std::mutex mutex;
  PackLockHold hold;  // its destructor releases when nobody called
  bool called = false;
  std::error_code result;
  std::error_code cause;
};

// The private parts the free functions below need.
class TryLockAccess {
 public:
  static int directory_fd(const Root& root) noexcept {
    return root.directory_ ? root.directory_->fd.get() : -1;
  }
  static detail::Cancellation* cancellation(const Context& ctx) noexcept {
    return ctx.cancellation_.get();
  }
  static UnlockFunc unlock_func(PackLockHold hold) {
    UnlockFunc unlock;
    unlock.state_ = std::make_shared<UnlockFunc::State>(std::move(hold));
    return unlock;
  }
};

namespace {

const std::filesystem::path kNoPath;

// The pack of `root` as the context wants it kept, opened afresh: the
// engine's in-process queue is shared by every Pack of one directory.
std::shared_ptr<const detail::Pack> open_root(const Context& ctx, const Root& root,
                                              std::error_code& ec) noexcept {
  const int dir = TryLockAccess::directory_fd(root);
  if (dir < 0) {
    ec = errc::not_open;
    return nullptr;
  }
  detail::UniqueFd copy(::fcntl(dir, F_DUPFD_CLOEXEC, 0));
  if (!copy) {
    ec.assign(errno, std::system_category());
    return nullptr;
  }
  LockOptions options;
  try {
    options = ctx.options();
    options.sidecar_name = root.lock_file();
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return nullptr;
  }
  options.create = true;
  return detail::Pack::open_at(std::move(copy), root.path(), options, ec);
}

UnlockFunc lock_as(Mode mode, const Context& ctx, const Root& root, std::error_code& ec,
                   std::error_code* cause) noexcept try {
  std::error_code why;
  std::unique_ptr<detail::Hold> hold;
  if (const auto pack = open_root(ctx, root, why)) {
    hold = detail::acquire(pack, mode, ctx.deadline(), why, TryLockAccess::cancellation(ctx));
  }
  if (cause) *cause = why;
  if (!hold) {
    ec = errc::lock_unsuccessful;
    return {};
  }
  ec.clear();
  return TryLockAccess::unlock_func(detail::HoldAccess::wrap(std::move(hold)));
} catch (const std::bad_alloc&) {
  ec = errc::lock_unsuccessful;
  if (cause) *cause = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

UnlockFunc lock_or_throw(Mode mode, const Context& ctx, const Root& root) {
  std::error_code ec, cause;
  UnlockFunc unlock = lock_as(mode, ctx, root, ec, &cause);
  if (ec) throw Error(ec, "lock", root.path() / root.lock_file(), cause);
  return unlock;
}

}  // namespace

Root::Root() noexcept = default;

Root Root::open(const std::filesystem::path& dir, std::error_code& ec) noexcept try {
  Root root;
  ec.clear();
  detail::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    ec.assign(errno, std::system_category());
    return root;
  }
  root.directory_ = std::make_shared<const detail::RootDirectory>(
      detail::RootDirectory{std::move(fd), dir});
  return root;
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

Root Root::open(const std::filesystem::path& dir) {
  std::error_code ec;
  Root root = open(dir, ec);
  if (ec) throw Error(ec, "open", dir);
  return root;
}

Root& Root::lock_file(std::string name) {
  lock_file_ = std::move(name);
  return *this;
}

const std::filesystem::path& Root::path() const noexcept {
  return directory_ ? directory_->path : kNoPath;
}

Context::Context() : cancellation_(std::make_shared<detail::Cancellation>()) {}

void Context::cancel() noexcept { cancellation_->cancel(); }

bool Context::cancelled() const noexcept { return cancellation_->cancelled(); }

std::error_code Context::err() const noexcept {
  if (cancelled()) return errc::cancelled;
  if (deadline_ && std::chrono::steady_clock::now() >= *deadline_) return errc::timeout;
  return {};
}

Context& Context::with_deadline(std::chrono::steady_clock::time_point deadline) noexcept {
  deadline_ = deadline;
  return *this;
}

Context& Context::with_timeout(std::chrono::steady_clock::duration timeout) noexcept {
  deadline_ = detail::deadline_after(std::max(timeout, std::chrono::steady_clock::duration::zero()));
  return *this;
}

Context& Context::with_logger(Logger logger) {
  options_.logger = std::move(logger);
  return *this;
}

Context& Context::with_stale_after(std::chrono::nanoseconds stale_after) noexcept {
  options_.stale_after = stale_after;
  return *this;
}

Context& Context::with_heartbeat(std::chrono::nanoseconds heartbeat) noexcept {
  options_.heartbeat = heartbeat;
  return *this;
}

Context& Context::with_stale_policy(StalePolicy policy) noexcept {
  options_.stale_policy = policy;
  return *this;
}

UnlockFunc::UnlockFunc() noexcept = default;

std::error_code UnlockFunc::operator()() const noexcept {
  if (!state_) return errc::not_held;
  std::lock_guard lock(state_->mutex);
  if (!state_->called) {
    state_->called = true;
    state_->cause = state_->hold.release();
    if (state_->cause) state_->result = errc::unlock_unsuccessful;
  }
  return state_->result;
}

std::error_code UnlockFunc::cause() const noexcept {
  if (!state_) return {};
  std::lock_guard lock(state_->mutex);
  return state_->cause;
}

bool UnlockFunc::lost() const noexcept {
  if (!state_) return false;
  std::lock_guard lock(state_->mutex);
  return state_->hold.lost();
}

UnlockFunc try_lock(const Context& ctx, const Root& root, std::error_code& ec,
                    std::error_code* cause) noexcept {
  return lock_as(Mode::exclusive, ctx, root, ec, cause);
}

UnlockFunc try_lock(const Context& ctx, const Root& root) {
  return lock_or_throw(Mode::exclusive, ctx, root);
}

UnlockFunc try_rlock(const Context& ctx, const Root& root, std::error_code& ec,
                     std::error_code* cause) noexcept {
  return lock_as(Mode::shared, ctx, root, ec, cause);
}

UnlockFunc try_rlock(const Context& ctx, const Root& root) {
  return lock_or_throw(Mode::shared, ctx, root);
}

}  // namespace packlock
