#pragma once
// A pack as the engine sees it: an open directory descriptor, the sidecar's
// name in it, the pack's queue in the process-wide lock table, and how its
// holds live (LockOptions: heartbeat, stale period and policy, logger).

#include <fcntl.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>

#include <packlock/options.hpp>

#include <atomic>
#include <chrono>

#include "heartbeat.hpp"
#include "lock_table.hpp"
#include "owner_record.hpp"
#include "sidecar.hpp"
#include "unique_fd.hpp"

namespace packlock::detail {

// Shared freely between threads, copies of a PackLock and the holds taken
// through it: everything is immutable after open() but the idle descriptor,
// which its own mutex guards, and the stale-check hint, an atomic.
//
// A Pack belongs to the process that opened it. A forked child reopens it
// (for_this_process) and never touches the parent's: its mutex may have
// been held by a parent thread at the fork.
class Pack final {
 public:
  // Opens (creating with options.create) the pack directory and sidecar.
  // std::errc::invalid_argument for options no holder could keep: a
  // heartbeat that is not positive, a stale period not longer than the
  // heartbeat, a sidecar name that is empty, ".", ".." or holds a '/', a
  // wait signal that is not a real-time signal.
  static std::shared_ptr<const Pack> open(const std::filesystem::path& pack,
                                          const LockOptions& options,
                                          std::error_code& ec) noexcept;
  // The same for a directory already open (`dir`, spelled `spelled`). The
  // pack is then that directory, wherever it is renamed to (Go's os.Root),
  // unless `follows_path`: then it is whatever directory its canonical path
  // leads to, as for open().
  static std::shared_ptr<const Pack> open_at(UniqueFd dir, const std::filesystem::path& spelled,
                                             const LockOptions& options, std::error_code& ec,
                                             bool follows_path = false) noexcept;

  // `pack` itself, or in a forked child the same pack opened anew (its
  // directory descriptor reopened, a fresh queue and heartbeat service).
  static std::shared_ptr<const Pack> for_this_process(const std::shared_ptr<const Pack>& pack,
                                                      std::error_code& ec) noexcept;

  // The canonical path of the pack directory.
  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path sidecar_path() const { return sidecar_path_; }
  int dir_fd() const noexcept { return dir_.get(); }
  const std::string& sidecar_name() const noexcept { return options_.sidecar_name; }
  const LockOptions& options() const noexcept { return options_; }
  // On a network filesystem (see stale.hpp).
  bool network() const noexcept { return network_; }
  PackQueue& queue() const noexcept { return *queue_; }
  std::weak_ptr<PackQueue> shared_queue() const noexcept { return queue_; }

  // The lock table's key: the directory's identity (device, inode), so that
  // every spelling of it (symlinks, a rename since, bind mounts) is one key,
  // and the sidecar name, since different names are different locks.
  static std::string table_key(dev_t dev, ino_t ino, const std::string& name) {
    return std::to_string(dev) + ':' + std::to_string(ino) + ':' + name;
  }
  std::string table_key() const { return table_key(dir_dev_, dir_ino_, options_.sidecar_name); }

  // The sidecar the pack names now: for a pack opened by path, after a
  // rename of its directory, the one in whatever directory took its name.
  Sidecar open_sidecar(std::error_code& ec) const noexcept {
    return follows_path_ ? detail::open_sidecar(AT_FDCWD, sidecar_path_, options_.create, ec)
                         : detail::open_sidecar(dir_fd(), options_.sidecar_name, options_.create, ec);
  }

  // An unlocked descriptor of the sidecar kept from the last release, or a
  // new one. Reusing it saves the open(2) and fstat(2) of an acquisition;
  // the ghost-lock guard catches one whose inode the path no longer names.
  Sidecar take_sidecar(std::error_code& ec) const noexcept;
  // Keeps an unlocked descriptor for the next acquisition (or closes it).
  void keep_sidecar(Sidecar&& sidecar) const noexcept;

  // The signal that ends this pack's waits early (kernel_wait.hpp).
  int wait_signal() const noexcept { return wait_signal_; }

  // A hint shared by the acquirers of this process: the lock on inode `ino`
  // cannot turn stale before the returned instant (none: epoch).
  std::chrono::steady_clock::time_point stale_check_due(ino_t ino) const noexcept;
  void note_stale_check(std::chrono::steady_clock::time_point due, ino_t ino) const noexcept;
  // The ghost-lock check of an acquisition in `mode` (a shared one fills
  // sidecar.seen). For a pack opened by path, the pack path, not only the
  // directory descriptor, must still lead to the locked inode, so that a
  // pack renamed away (and perhaps replaced) while its lock was awaited is
  // not taken for the pack.
  bool path_names(Sidecar& sidecar, Mode mode) const noexcept {
    return path_names_sidecar(sidecar_where(), sidecar, mode == Mode::shared);
  }
  // The same check for a hold: the path still leads to inode (dev, ino).
  bool path_names(dev_t dev, ino_t ino) const noexcept {
    return path_names_inode(sidecar_where(), dev, ino);
  }
  // A directory descriptor of the pack as it is now, of its own (for
  // stale recovery's flock and unlink): the directory the path leads to,
  // or for a pack opened at a directory descriptor, that directory.
  UniqueFd open_directory_now() const noexcept;

  // Opened by path: the path, not the directory descriptor, is the pack.
  bool follows_path() const noexcept { return follows_path_; }

  // `spelled` still leads to the directory opened (one statx(2)).
  bool is_directory_at(const std::filesystem::path& spelled) const noexcept;

  // The heartbeat service of the holds taken through this Pack.
  HeartbeatService* heartbeat() const noexcept { return heartbeat_.get(); }
  const OwnerRecordWriter& record_writer() const noexcept { return record_writer_; }

  // Tells the logger, if there is one; `message()` builds the text only then.
  template <typename Message>
  void log(LogEventKind kind, Message&& message, std::error_code error) const noexcept {
    if (!options_.logger) return;
    try {
      options_.logger(LogEvent{kind, path_, message(), error});
    } catch (...) {
    }
  }
  // The same, to be made later on another thread (empty without a logger).
  std::function<void()> log_call(LogEventKind kind, std::string message,
                                 std::error_code error) const;

  Pack(UniqueFd dir, dev_t dir_dev, ino_t dir_ino, std::filesystem::path path,
       const LockOptions& options, std::shared_ptr<PackQueue> queue, bool follows_path);
  Pack(const Pack&) = delete;
  Pack& operator=(const Pack&) = delete;

 private:
  UniqueFd dir_;
  dev_t dir_dev_;
  ino_t dir_ino_;
  std::filesystem::path path_;
  LockOptions options_;
  std::string sidecar_path_;  // path_ / options_.sidecar_name
  bool follows_path_;         // opened by path: the path, not dir_, is the pack

  SidecarPath sidecar_where() const noexcept {
    return {dir_fd(), options_.sidecar_name, follows_path_ ? &sidecar_path_ : nullptr};
  }
  bool network_;
  int wait_signal_;
  unsigned generation_;  // fork_generation() at open
  std::shared_ptr<PackQueue> queue_;
  OwnerRecordWriter record_writer_;
  mutable std::mutex idle_mutex_;
  mutable Sidecar idle_;
  mutable std::atomic<std::chrono::steady_clock::rep> stale_check_due_{0};
  mutable std::atomic<ino_t> stale_check_ino_{0};
  const std::shared_ptr<HeartbeatService> heartbeat_;
};

}  // namespace packlock::detail
