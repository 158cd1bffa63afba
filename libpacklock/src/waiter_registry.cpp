#include "waiter_registry.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <ctime>

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

constexpr std::size_t kCountPage = 4096;

// Read-write when allowed (for the count), else read-only (a read lock is
// all visibility needs).
// `size` gets the file's size, for map_count.
UniqueFd open_waiters_file(const Pack& pack, bool& writable, off_t& size) noexcept {
  const std::string name = pack.sidecar_name() + kWaitersSuffix;
  constexpr int flags = O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK;
  UniqueFd fd(::openat(pack.dir_fd(), name.c_str(), O_RDWR | flags, 0666));
  writable = static_cast<bool>(fd);
  if (!fd) fd = UniqueFd(::openat(pack.dir_fd(), name.c_str(), O_RDONLY | flags, 0666));
  struct stat st {};
  if (fd && (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))) fd.reset();
  size = st.st_size;
  return fd;
}

// Maps the count, the release word and the listeners, first making the file long enough
// to hold them: touching a mapped page wholly past the end of a file faults
// (SIGBUS), and bytes past the end within its last page may be zeroed when
// the page is written back. packlock never shrinks the file.
std::shared_ptr<const WaitingCount> map_count(int fd, off_t size) noexcept try {
  constexpr off_t kWords = 3 * sizeof(std::uint32_t);
  if (size < kWords && ::ftruncate(fd, kWords) != 0) {
    return nullptr;
  }
  void* const page = ::mmap(nullptr, kCountPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (page == MAP_FAILED) return nullptr;
  return std::make_shared<const WaitingCount>(page);
} catch (...) {
  return nullptr;
}

// Per pack: the one descriptor of its waiters file and how many waiters of
// each mode this process has. The descriptor outlives the waits, as long as
// the pack's queue does: closing it is a system call a waiter would pay
// right after it got its lock. All members guarded by `mutex`.
struct Entry {
  UniqueFd fd;
  std::shared_ptr<const WaitingCount> waiting;  // null: not writable here
  int count[2] = {0, 0};
  std::weak_ptr<PackQueue> queue;

  bool idle() const noexcept { return count[0] == 0 && count[1] == 0; }
};

ForkSafeMutex mutex;
// Never destroyed, like the lock table: waiters may finish during exit.
auto& entries = *new std::unordered_map<std::string, Entry>;
unsigned entries_generation = fork_generation();

// POSIX locks are not inherited: a forked child starts with no entries.
void forget_parent_after_fork() {
  if (entries_generation == fork_generation()) return;
  entries_generation = fork_generation();
  if (mutex.left_held_by_fork()) {
    abandon(entries);
    return;
  }
  entries.clear();
}

// Closes the descriptors of packs this process no longer has open.
void forget_closed_packs() {
  std::erase_if(entries, [](const auto& item) {
    return item.second.idle() && item.second.queue.expired();
  });
}

// The entry of `pack`, its file open (or null, the file not to be had).
// Called under `mutex`.
Entry* entry_of(const Pack& pack, const std::string& key) {
  forget_parent_after_fork();
  if (!entries.contains(key)) forget_closed_packs();
  Entry& entry = entries[key];
  // An idle entry of a pack closed since may carry the same key (a new
  // directory that got the old one's inode number): its file is not ours.
  if (entry.idle() && entry.queue.lock() != pack.shared_queue().lock()) entry = Entry{};
  if (!entry.fd) {
    bool writable = false;
    off_t size = 0;
    entry.fd = open_waiters_file(pack, writable, size);
    if (entry.fd && writable) entry.waiting = map_count(entry.fd.get(), size);
    entry.queue = pack.shared_queue();
  }
  if (!entry.fd) {
    entries.erase(key);
    return nullptr;
  }
  return &entry;
}

}  // namespace

WaitingCount::~WaitingCount() { ::munmap(page_, kCountPage); }

// Cross-process atomics on the shared page; sequentially consistent, so the
// count and the lock order as the header says on every architecture.
std::atomic_ref<std::uint32_t> WaitingCount::count() const noexcept {
  return std::atomic_ref(*static_cast<std::uint32_t*>(page_));
}

bool WaitingCount::anyone() const noexcept { return count().load() != 0; }

std::atomic_ref<std::uint32_t> WaitingCount::listeners() const noexcept {
  return std::atomic_ref(static_cast<std::uint32_t*>(page_)[2]);
}

bool WaitingCount::anyone_listening() const noexcept { return listeners().load() != 0; }

std::uint32_t* WaitingCount::release_word() const noexcept {
  return static_cast<std::uint32_t*>(page_) + 1;
}

std::uint32_t WaitingCount::releases() const noexcept {
  return std::atomic_ref(*release_word()).load();
}

// A shared futex (no FUTEX_PRIVATE_FLAG): the word is one page of one file
// mapped by several processes, which the kernel keys by inode and offset.
void WaitingCount::released() const noexcept {
  std::atomic_ref(*release_word()).fetch_add(1);
  ::syscall(SYS_futex, release_word(), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

void WaitingCount::sleep(std::uint32_t seen, std::chrono::nanoseconds timeout) const noexcept {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  const timespec relative{static_cast<time_t>(secs.count()),
                          static_cast<long>((timeout - secs).count())};
  ::syscall(SYS_futex, release_word(), FUTEX_WAIT, seen, &relative, nullptr, 0);
}

namespace {

// Never below zero: a count reset by hand must not wrap to "many".
void decrement_to_zero(std::atomic_ref<std::uint32_t> word) noexcept {
  std::uint32_t seen = word.load();
  while (seen != 0 && !word.compare_exchange_weak(seen, seen - 1)) {
  }
}

}  // namespace

// The listener is counted first and uncounted last: a releaser that finds
// a waiter counted writes the wake channel if it is one.
void WaitingCount::add(WakeBy wake_by) const noexcept {
  if (wake_by == WakeBy::wake_channel) listeners().fetch_add(1);
  count().fetch_add(1);
}

void WaitingCount::remove(WakeBy wake_by) const noexcept {
  decrement_to_zero(count());
  if (wake_by == WakeBy::wake_channel) decrement_to_zero(listeners());
}

// The count of a SIGKILLed waiter (or one left from before a reboot) stays;
// the last waiter of a process that finds no other process registered (no
// other read lock on the file) takes it back to zero. Read before the
// check, cleared only if unchanged: a registration that came in between,
// which takes its read lock before it counts, keeps it.
void WaitingCount::forget_the_dead(int waiters_fd) const noexcept {
  std::atomic_ref<std::uint32_t> count = this->count();
  std::atomic_ref<std::uint32_t> listeners = this->listeners();
  std::uint32_t seen = count.load();
  std::uint32_t seen_listening = listeners.load();
  if (seen == 0 && seen_listening == 0) return;
  struct flock probe {};
  probe.l_type = F_WRLCK;  // conflicts with any other process's read lock
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 2;
  if (::fcntl(waiters_fd, F_GETLK, &probe) != 0 || probe.l_type != F_UNLCK) return;
  count.compare_exchange_strong(seen, 0);
  listeners.compare_exchange_strong(seen_listening, 0);
}

std::shared_ptr<const WaitingCount> waiting_count_of(const Pack& pack) noexcept try {
  const std::string key = pack.table_key();
  std::lock_guard lock(mutex);
  const Entry* entry = entry_of(pack, key);
  return entry ? entry->waiting : nullptr;
} catch (...) {
  return nullptr;
}

void close_waiters_file_of(const std::string& key) noexcept {
  std::lock_guard lock(mutex);
  forget_parent_after_fork();
  const auto it = entries.find(key);
  if (it != entries.end() && it->second.idle() && it->second.queue.expired()) entries.erase(it);
}

WaiterRegistration::WaiterRegistration(const Pack& pack, Mode mode, WakeBy wake_by) noexcept
    : mode_(mode), wake_by_(wake_by) {
  try {
    std::string key = pack.table_key();
    std::lock_guard lock(mutex);
    Entry* const entry = entry_of(pack, key);
    if (!entry) return;
    if (entry->count[byte_for(mode)]++ == 0 && !set_read_lock(entry->fd.get(), mode, true)) {
      --entry->count[byte_for(mode)];
      return;
    }
    key_ = std::move(key);
    count_ = entry->waiting;
    if (count_) count_->add(wake_by_);
  } catch (...) {
    // Without memory for the key: an invisible waiter, woken by inotify
    // and the back-off.
  }
}

WaiterRegistration::WaiterRegistration(WaiterRegistration&& other) noexcept
    : key_(std::move(other.key_)),
      mode_(other.mode_),
      wake_by_(other.wake_by_),
      count_(std::move(other.count_)) {
  other.key_.clear();
}

WaiterRegistration& WaiterRegistration::operator=(WaiterRegistration&& other) noexcept {
  if (this != &other) {
    reset();
    key_ = std::move(other.key_);
    mode_ = other.mode_;
    wake_by_ = other.wake_by_;
    count_ = std::move(other.count_);
    other.key_.clear();
  }
  return *this;
}

void WaiterRegistration::reset() noexcept {
  if (key_.empty()) return;
  if (count_) std::exchange(count_, nullptr)->remove(wake_by_);
  std::lock_guard lock(mutex);
  forget_parent_after_fork();
  const auto it = entries.find(key_);
  key_.clear();
  if (it == entries.end()) return;
  Entry& entry = it->second;
  if (--entry.count[byte_for(mode_)] == 0) set_read_lock(entry.fd.get(), mode_, false);
  if (entry.idle() && entry.waiting) entry.waiting->forget_the_dead(entry.fd.get());
}

}  // namespace packlock::detail
