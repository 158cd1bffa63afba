#include "waiter_registry.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <mutex>
#include <unordered_map>

#include "lock_table.hpp"
#include "pack.hpp"
#include "unique_fd.hpp"

namespace packlock::detail {
namespace {

off_t byte_for(Mode mode) noexcept { return mode == Mode::exclusive ? 0 : 1; }

bool set_read_lock(int fd, Mode mode, bool on) noexcept {
  struct flock range {};
  range.l_type = on ? F_RDLCK : F_UNLCK;
  range.l_whence = SEEK_SET;
  range.l_start = byte_for(mode);
  range.l_len = 1;
  return ::fcntl(fd, F_SETLK, &range) == 0;
}

UniqueFd open_waiters_file(const Pack& pack) noexcept {
  const std::string name = pack.sidecar_name() + kWaitersSuffix;
  UniqueFd fd(::openat(pack.dir_fd(), name.c_str(),
                       O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0666));
  struct stat st {};
  if (fd && (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))) fd.reset();
  return fd;
}

// Per pack: the one descriptor of its waiters file and how many waiters of
// each mode this process has. The descriptor outlives the waits, as long as
// the pack's queue does: closing it is a system call a waiter would pay
// right after it got its lock. All members guarded by `mutex`.
struct Entry {
  UniqueFd fd;
  int count[2] = {0, 0};
  std::weak_ptr<PackQueue> queue;

  bool idle() const noexcept { return count[0] == 0 && count[1] == 0; }
};

std::mutex mutex;
// Never destroyed, like the lock table: waiters may finish during exit.
auto& entries = *new std::unordered_map<std::string, Entry>;
unsigned entries_generation = fork_generation();

// POSIX locks are not inherited: a forked child starts with no entries.
void forget_parent_after_fork() {
  if (entries_generation == fork_generation()) return;
  entries_generation = fork_generation();
  entries.clear();
}

// Closes the descriptors of packs this process no longer has open.
void forget_closed_packs() {
  std::erase_if(entries, [](const auto& item) {
    return item.second.idle() && item.second.queue.expired();
  });
}

}  // namespace

WaiterRegistration::WaiterRegistration(const Pack& pack, Mode mode) noexcept : mode_(mode) {
  std::string key = pack.table_key();
  std::lock_guard lock(mutex);
  forget_parent_after_fork();
  if (!entries.contains(key)) forget_closed_packs();
  Entry& entry = entries[key];
  // An idle entry of a pack closed since may carry the same key (a new
  // directory that got the old one's inode number): its file is not ours.
  if (entry.idle() && entry.queue.lock() != pack.shared_queue().lock()) entry = Entry{};
  if (!entry.fd) {
    entry.fd = open_waiters_file(pack);
    entry.queue = pack.shared_queue();
  }
  if (!entry.fd) {
    entries.erase(key);
    return;
  }
  if (entry.count[byte_for(mode)]++ == 0 && !set_read_lock(entry.fd.get(), mode, true)) {
    --entry.count[byte_for(mode)];
    return;
  }
  key_ = std::move(key);
}

WaiterRegistration::WaiterRegistration(WaiterRegistration&& other) noexcept
    : key_(std::move(other.key_)), mode_(other.mode_) {
  other.key_.clear();
}

WaiterRegistration& WaiterRegistration::operator=(WaiterRegistration&& other) noexcept {
  if (this != &other) {
    reset();
    key_ = std::move(other.key_);
    mode_ = other.mode_;
    other.key_.clear();
  }
  return *this;
}

void WaiterRegistration::reset() noexcept {
  if (key_.empty()) return;
  std::lock_guard lock(mutex);
  forget_parent_after_fork();
  const auto it = entries.find(key_);
  key_.clear();
  if (it == entries.end()) return;
  Entry& entry = it->second;
  if (--entry.count[byte_for(mode_)] == 0) set_read_lock(entry.fd.get(), mode_, false);
}

}  // namespace packlock::detail
