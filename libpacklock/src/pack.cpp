#include "pack.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>

#include "fork.hpp"
#include "kernel_wait.hpp"
#include "stale.hpp"

namespace packlock::detail {
namespace {

bool valid_sidecar_name(const std::string& name) noexcept {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string::npos;
}

int wait_signal_of(const LockOptions& options) noexcept {
  return options.wait_signal != 0 ? options.wait_signal : default_wait_signal();
}

// The options with the heartbeat and stale period in force.
LockOptions with_timing(LockOptions options) noexcept {
  const Timing timing = resolved_timing(options.heartbeat, options.stale_after);
  options.heartbeat = timing.heartbeat;
  options.stale_after = timing.stale_after;
  return options;
}

bool valid(const LockOptions& given) noexcept {
  const LockOptions options = with_timing(given);
  const int signo = wait_signal_of(options);
  return options.heartbeat > std::chrono::nanoseconds::zero() &&
         options.stale_after > options.heartbeat && valid_sidecar_name(options.sidecar_name) &&
         signo >= SIGRTMIN && signo <= SIGRTMAX;
}

}  // namespace

Pack::Pack(UniqueFd dir, dev_t dir_dev, ino_t dir_ino, std::filesystem::path path,
           const LockOptions& options, std::shared_ptr<PackQueue> queue, bool follows_path)
    : dir_(std::move(dir)),
      dir_dev_(dir_dev),
      dir_ino_(dir_ino),
      path_(std::move(path)),
      options_(with_timing(options)),
      sidecar_path_((path_ / options_.sidecar_name).string()),
      follows_path_(follows_path),
      network_(is_network_filesystem(dir_.get())),
      wait_signal_(wait_signal_of(options)),
      generation_(fork_generation()),
      queue_(std::move(queue)),
      record_writer_(options_),
      heartbeat_(HeartbeatService::shared()) {}

Sidecar Pack::take_sidecar(std::error_code& ec) const noexcept {
  {
    std::lock_guard lock(idle_mutex_);
    // A descriptor kept before a fork is one open file description shared
    // with the other process: flock(2) would take the two for one holder.
    if (idle_.fd && idle_.epoch == descriptor_epoch()) {
      ec.clear();
      return std::move(idle_);
    }
    idle_.fd.reset();
  }
  return open_sidecar(ec);
}

void Pack::keep_sidecar(Sidecar&& sidecar) const noexcept {
  if (sidecar.epoch != descriptor_epoch()) return;  // shared with another process
  std::lock_guard lock(idle_mutex_);
  if (idle_.fd && idle_.epoch == descriptor_epoch()) return;
  idle_ = std::move(sidecar);
}

bool Pack::is_directory_at(const std::filesystem::path& spelled) const noexcept {
  struct statx st {};
  return ::statx(AT_FDCWD, spelled.c_str(), 0, STATX_INO, &st) == 0 && (st.stx_mask & STATX_INO) &&
         st.stx_ino == dir_ino_ && makedev(st.stx_dev_major, st.stx_dev_minor) == dir_dev_;
}

UniqueFd Pack::open_directory_now() const noexcept {
  if (!follows_path_) return UniqueFd(::openat(dir_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  // Not through a symlink planted in the canonical path since.
  return UniqueFd(open_path_no_symlinks(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

std::chrono::steady_clock::time_point Pack::stale_check_due(ino_t ino) const noexcept {
  if (stale_check_ino_.load(std::memory_order_relaxed) != ino) return {};
  return std::chrono::steady_clock::time_point(
      std::chrono::steady_clock::duration(stale_check_due_.load(std::memory_order_relaxed)));
}

void Pack::note_stale_check(std::chrono::steady_clock::time_point due, ino_t ino) const noexcept {
  // Racing notes may pair one inode with another's time; the hint only
  // spares a judgement, and a wrong one is corrected by the next.
  stale_check_ino_.store(ino, std::memory_order_relaxed);
  stale_check_due_.store(due.time_since_epoch().count(), std::memory_order_relaxed);
}

std::shared_ptr<const Pack> Pack::for_this_process(const std::shared_ptr<const Pack>& pack,
                                                   std::error_code& ec) noexcept {
  ec.clear();
  if (!pack || pack->generation_ == fork_generation()) return pack;
  // The parent's descriptor of the directory is shared; a new one is ours.
  UniqueFd dir(::openat(pack->dir_fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    ec.assign(errno, std::system_category());
    return nullptr;
  }
  return open_at(std::move(dir), pack->path(), pack->options(), ec, pack->follows_path_);
}

std::function<void()> Pack::log_call(LogEventKind kind, std::string message,
                                     std::error_code error) const {
  if (!options_.logger) return {};
  return [logger = options_.logger, event = LogEvent{kind, path_, std::move(message), error}] {
    logger(event);
  };
}

std::shared_ptr<const Pack> Pack::open(const std::filesystem::path& pack, const LockOptions& options,
                                       std::error_code& ec) noexcept {
  if (!valid(options)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return nullptr;
  }
  UniqueFd dir = open_pack_directory(pack, options.create, ec);
  if (ec) return nullptr;
  return open_at(std::move(dir), pack, options, ec, /*follows_path=*/true);
}

std::shared_ptr<const Pack> Pack::open_at(UniqueFd dir, const std::filesystem::path& spelled,
                                          const LockOptions& options, std::error_code& ec,
                                          bool follows_path) noexcept try {
  ec.clear();
  if (!valid(options)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return nullptr;
  }
  std::filesystem::path canonical = canonical_directory_path(dir.get(), spelled, ec);
  if (ec) return nullptr;
  // Opening the sidecar now reports a refused sidecar (symlink, FIFO, ...)
  // at open time, and creates it so that other tools see the pack as lockable.
  Sidecar sidecar = detail::open_sidecar(dir.get(), options.sidecar_name, options.create, ec);
  if (ec) return nullptr;
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0) {
    ec.assign(errno, std::system_category());
    return nullptr;
  }
  const std::string key = table_key(st.st_dev, st.st_ino, options.sidecar_name);
  auto opened = std::make_shared<const Pack>(std::move(dir), st.st_dev, st.st_ino,
                                             std::move(canonical), options,
                                             LockTable::instance().queue_for(key), follows_path);
  opened->keep_sidecar(std::move(sidecar));
  return opened;
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return nullptr;
}

}  // namespace packlock::detail
