#pragma once
// What one LockManager and its copies share.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <unordered_map>

#include <packlock/lock_manager.hpp>
#include <packlock/options.hpp>

namespace packlock::detail {

// The state of one LockManager and its copies: the lock directory and the
// options every pack is opened with (fixed), its serial in this process
// (its client id), and the ext_lock handles it holds, guarded by mutex_.
class ManagerState final {
 public:
  ManagerState(std::filesystem::path lock_dir, LockOptions options)
      : lock_dir_(std::move(lock_dir)), options_(std::move(options)), client_(next_client()) {}

  const std::filesystem::path& lock_dir() const noexcept { return lock_dir_; }
  const LockOptions& options() const noexcept { return options_; }
  std::uint64_t client() const noexcept { return client_; }

  LockHandle keep(Ticket&& ticket, std::string name) {
    std::lock_guard lock(mutex_);
    LockHandle handle{next_handle_++, std::move(name)};
    handles_.emplace(handle.id, Held{handle.name, std::move(ticket)});
    return handle;
  }

  // The handle's ticket, no longer kept; an empty ticket when the handle is
  // not one this manager holds.
  Ticket give_back(const LockHandle& handle) noexcept {
    std::lock_guard lock(mutex_);
    const auto it = handles_.find(handle.id);
    if (it == handles_.end() || it->second.name != handle.name) return {};
    Ticket ticket = std::move(it->second.ticket);
    handles_.erase(it);
    return ticket;
  }

 private:
  struct Held {
    std::string name;
    Ticket ticket;
  };

  static std::uint64_t next_client() noexcept {
    static std::atomic<std::uint64_t> last{0};
    return ++last;
  }

  const std::filesystem::path lock_dir_;
  const LockOptions options_;
  const std::uint64_t client_;
  std::mutex mutex_;
  std::uint64_t next_handle_ = 1;
  std::unordered_map<std::uint64_t, Held> handles_;
};

}  // namespace packlock::detail
