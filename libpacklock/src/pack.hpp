#pragma once
// A pack as the engine sees it: an open directory descriptor, the sidecar's
// name in it, and the pack's queue in the process-wide lock table.

#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "lock_table.hpp"
#include "sidecar.hpp"
#include "unique_fd.hpp"
#include "wake_channel.hpp"

#include <mutex>

namespace packlock::detail {

struct PackOptions {
  bool create = true;  // create the pack directory and the sidecar if missing
  std::string sidecar_name = kDefaultSidecarName;
};

// Shared freely between threads, copies of a PackLock and the holds taken
// through it: everything is immutable after open() but the idle descriptor,
// which its own mutex guards.
class Pack final {
 public:
  static std::shared_ptr<const Pack> open(const std::filesystem::path& pack,
                                          const PackOptions& options,
                                          std::error_code& ec) noexcept;

  // The canonical path of the pack directory.
  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path sidecar_path() const { return path_ / sidecar_name_; }
  int dir_fd() const noexcept { return dir_.get(); }
  const std::string& sidecar_name() const noexcept { return sidecar_name_; }
  PackQueue& queue() const noexcept { return *queue_; }
  std::weak_ptr<PackQueue> shared_queue() const noexcept { return queue_; }

  // The lock table's key: the directory's identity (device, inode), so that
  // every spelling of it (symlinks, a rename since, bind mounts) is one key,
  // and the sidecar name, since different names are different locks.
  static std::string table_key(dev_t dev, ino_t ino, const std::string& name) {
    return std::to_string(dev) + ':' + std::to_string(ino) + ':' + name;
  }
  std::string table_key() const { return table_key(dir_dev_, dir_ino_, sidecar_name_); }

  Sidecar open_sidecar(std::error_code& ec) const noexcept {
    return detail::open_sidecar(dir_fd(), sidecar_name_, create_, ec);
  }

  // An unlocked descriptor of the sidecar kept from the last release, or a
  // new one. Reusing it saves the open(2) and fstat(2) of an acquisition;
  // the ghost-lock guard catches one whose inode the path no longer names.
  Sidecar take_sidecar(std::error_code& ec) const noexcept;
  // Keeps an unlocked descriptor for the next acquisition (or closes it).
  void keep_sidecar(Sidecar&& sidecar) const noexcept;

  const WakeChannel& wake() const noexcept { return wake_; }
  bool path_names(const Sidecar& sidecar) const noexcept {
    return path_names_inode(dir_fd(), sidecar_name_, sidecar);
  }

  Pack(UniqueFd dir, dev_t dir_dev, ino_t dir_ino, std::filesystem::path path,
       const PackOptions& options, std::shared_ptr<PackQueue> queue) noexcept;

 private:
  UniqueFd dir_;
  dev_t dir_dev_;
  ino_t dir_ino_;
  std::filesystem::path path_;
  std::string sidecar_name_;
  bool create_;
  std::shared_ptr<PackQueue> queue_;
  WakeChannel wake_;
  mutable std::mutex idle_mutex_;
  mutable Sidecar idle_;
};

}  // namespace packlock::detail
