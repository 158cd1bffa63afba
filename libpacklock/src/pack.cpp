#include "pack.hpp"

#include <sys/stat.h>

#include <cerrno>

namespace packlock::detail {

Pack::Pack(UniqueFd dir, dev_t dir_dev, ino_t dir_ino, std::filesystem::path path,
           const PackOptions& options, std::shared_ptr<PackQueue> queue) noexcept
    : dir_(std::move(dir)),
      dir_dev_(dir_dev),
      dir_ino_(dir_ino),
      path_(std::move(path)),
      sidecar_name_(options.sidecar_name),
      create_(options.create),
      queue_(std::move(queue)),
      wake_(dir_.get(), sidecar_name_) {}

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

std::shared_ptr<const Pack> Pack::open(const std::filesystem::path& pack,
                                       const PackOptions& options,
                                       std::error_code& ec) noexcept try {
  UniqueFd dir = open_pack_directory(pack, options.create, ec);
  if (ec) return nullptr;
  std::filesystem::path canonical = canonical_directory_path(dir.get(), pack, ec);
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
