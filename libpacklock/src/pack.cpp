#include "pack.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "stale.hpp"

namespace packlock::detail {
namespace {

bool valid_sidecar_name(const std::string& name) noexcept {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string::npos;
}

bool valid(const LockOptions& options) noexcept {
  return options.heartbeat > std::chrono::nanoseconds::zero() &&
         options.stale_after > options.heartbeat && valid_sidecar_name(options.sidecar_name);
}

}  // namespace

Pack::Pack(UniqueFd dir, dev_t dir_dev, ino_t dir_ino, std::filesystem::path path,
           const LockOptions& options, std::shared_ptr<PackQueue> queue)
    : dir_(std::move(dir)),
      dir_dev_(dir_dev),
      dir_ino_(dir_ino),
      path_(std::move(path)),
      options_(options),
      network_(is_network_filesystem(dir_.get())),
      queue_(std::move(queue)),
      wake_(dir_.get(), options_.sidecar_name),
      record_writer_(options_),
      heartbeat_(HeartbeatService::shared()) {
  waiting_ = waiting_count_of(*this);
}

Pack::~Pack() {
  (void)lock_idle();  // in a forked child, leaves alone what a fork caught mid-change
  try {
    const std::string key = table_key();
    waiting_.reset();
    queue_.reset();
    close_waiters_file_of(key);
  } catch (...) {
    // Without memory for the key: the registry closes it with a later pack.
  }
}

std::unique_lock<ForkSafeMutex> Pack::lock_idle() const noexcept {
  std::unique_lock lock(idle_mutex_);
  if (idle_mutex_.left_held_by_fork()) abandon(idle_);
  return lock;
}

Sidecar Pack::take_sidecar(std::error_code& ec) const noexcept {
  {
    const auto lock = lock_idle();
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
  const auto lock = lock_idle();
  if (idle_.fd && idle_.epoch == descriptor_epoch()) return;
  idle_ = std::move(sidecar);
}

HeartbeatService* Pack::heartbeat() const noexcept try {
  if (heartbeat_->generation() == fork_generation()) return heartbeat_.get();
  // A service from before a fork has no thread in this process; the
  // child's own is pinned, so the pointer outlives this reference.
  return HeartbeatService::shared().get();
} catch (...) {
  return nullptr;
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
  return open_at(std::move(dir), pack, options, ec);
}

std::shared_ptr<const Pack> Pack::open_at(UniqueFd dir, const std::filesystem::path& spelled,
                                          const LockOptions& options,
                                          std::error_code& ec) noexcept try {
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
                                             LockTable::instance().queue_for(key));
  opened->keep_sidecar(std::move(sidecar));
  return opened;
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return nullptr;
}

}  // namespace packlock::detail
