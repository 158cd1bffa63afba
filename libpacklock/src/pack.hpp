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

namespace packlock::detail {

struct PackOptions {
  bool create = true;  // create the pack directory and the sidecar if missing
  std::string sidecar_name = kDefaultSidecarName;
};

// Immutable after open(), so it is shared freely between threads, copies of
// a PackLock and the holds taken through it.
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
  bool creates() const noexcept { return create_; }
  PackQueue& queue() const noexcept { return *queue_; }

  // The lock table's key: different sidecar names in one directory are
  // different locks.
  static std::string table_key(const std::filesystem::path& canonical, const std::string& name) {
    return canonical.string() + '\0' + name;
  }

  Sidecar open_sidecar(std::error_code& ec) const noexcept {
    return detail::open_sidecar(dir_fd(), sidecar_name_, create_, ec);
  }
  bool path_names(const Sidecar& sidecar) const noexcept {
    return path_names_inode(dir_fd(), sidecar_name_, sidecar);
  }

  Pack(UniqueFd dir, std::filesystem::path path, const PackOptions& options,
       std::shared_ptr<PackQueue> queue) noexcept;

 private:
  UniqueFd dir_;
  std::filesystem::path path_;
  std::string sidecar_name_;
  bool create_;
  std::shared_ptr<PackQueue> queue_;
};

}  // namespace packlock::detail
