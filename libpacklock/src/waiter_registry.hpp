#pragma once
// Makes this process visible to other processes as a waiter for a pack.
//
// A waiting process holds a POSIX read lock on one byte of the pack's
// waiters file, `<sidecar>.waiters`: byte 0 while it waits for an exclusive
// lock, byte 1 while it waits for a shared one. The kernel lists those locks
// with the pid in /proc/locks and drops them when the process dies, even by
// SIGKILL, so the view needs no cleanup. POSIX (not OFD) locks because only
// they carry the pid; their one hazard, that closing any descriptor of the
// file drops all of the process's locks on it, is contained by the registry
// owning the only descriptor this process has of each waiters file.
//
// Visibility is best effort: a waiters file that cannot be created (a
// read-only directory) makes the waiter invisible, never fails the wait.
//
// The file also counts the waiters of the host: its first four bytes, mapped
// shared by every packlock process that may write the file, hold how many
// registrations are alive; the next four are the release word, a futex that
// blocking waiters sleep on (see WaitingCount::sleep and inotify_relay.hpp);
// the next four count the registrations that listen on the wake channel
// instead (asynchronous waits, and blocking waits a cancellation can end).
// A releaser wakes waiters only when the count is not zero, which saves an
// uncontended release its system calls (see WaitingCount), and writes the
// wake channel only when a listener is counted: a waiter that shares the
// releaser's CPU runs only after the releaser's last system call before its
// yield, so a write nobody reads is handoff latency. A SIGKILLed waiter
// leaves the counts too high: releasers then write wake-ups nobody needs,
// until the next waiter that finds itself alone clears them
// (WaitingCount::forget_the_dead). A waiter that may not write the file is
// not counted; it could not write (so could not open) the wake channel
// either, made by the same first process with the same permissions, and
// waits on inotify and the back-off.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <packlock/mode.hpp>

namespace packlock::detail {

class Pack;

inline constexpr const char* kWaitersSuffix = ".waiters";

// How a waiter hears of releases: asleep on the release word, or polling
// the wake channel (with inotify and, for the Go face, a cancellation).
enum class WakeBy { release_word, wake_channel };

// The mapped count of one pack's waiters file. A releaser reads it after
// its LOCK_UN; a waiter increments it before the attempt that precedes its
// wait. flock(2) orders the two in the kernel (the waiter's busy attempt
// comes before the unlock), so a releaser that reads zero had no waiter to
// wake, and one that a waiter counted on reads at least one.
class WaitingCount final {
 public:
  explicit WaitingCount(void* page) noexcept : page_(page) {}
  WaitingCount(const WaitingCount&) = delete;
  WaitingCount& operator=(const WaitingCount&) = delete;
  ~WaitingCount();

  bool anyone() const noexcept;
  // The release word, beside the count: bumped by every release that finds
  // a waiter counted. A blocking waiter reads it before its attempt and
  // sleeps only while it is unchanged.
  std::uint32_t releases() const noexcept;
  // After a release: bumps the word and wakes every sleeper of the host.
  void released() const noexcept;
  // Sleeps while the word is `seen`, for at most `timeout`, or until a
  // signal; spurious returns are allowed.
  void sleep(std::uint32_t seen, std::chrono::nanoseconds timeout) const noexcept;
  // Whether a counted waiter listens on the wake channel.
  bool anyone_listening() const noexcept;
  void add(WakeBy wake_by) const noexcept;
  void remove(WakeBy wake_by) const noexcept;
  // Both counts back to zero when no other process holds a waiter lock on
  // `waiters_fd` (called by a process with no registration of its own left).
  void forget_the_dead(int waiters_fd) const noexcept;

 private:
  std::atomic_ref<std::uint32_t> count() const noexcept;
  std::atomic_ref<std::uint32_t> listeners() const noexcept;
  std::uint32_t* release_word() const noexcept;

  void* page_;
};

// The count of `pack`'s waiters file (creating the file), or null when this
// process may not map it writable; then it writes every wake-up.
std::shared_ptr<const WaitingCount> waiting_count_of(const Pack& pack) noexcept;
// Closes the waiters file of the pack `key` if no Pack of it is left open
// (its queue gone) and this process does not wait for it.
void close_waiters_file_of(const std::string& key) noexcept;

// Registered while it lives. Move-only.
class WaiterRegistration final {
 public:
  WaiterRegistration() noexcept = default;
  WaiterRegistration(const Pack& pack, Mode mode, WakeBy wake_by) noexcept;
  WaiterRegistration(WaiterRegistration&& other) noexcept;
  WaiterRegistration& operator=(WaiterRegistration&& other) noexcept;
  WaiterRegistration(const WaiterRegistration&) = delete;
  WaiterRegistration& operator=(const WaiterRegistration&) = delete;
  ~WaiterRegistration() { reset(); }

  bool active() const noexcept { return !key_.empty(); }
  // Whether the pack's waiting count counts it: then the caller must
  // attempt the lock once more before it waits (see WaitingCount).
  bool counted() const noexcept { return static_cast<bool>(count_); }
  void reset() noexcept;

 private:
  std::string key_;
  Mode mode_ = Mode::exclusive;
  WakeBy wake_by_ = WakeBy::release_word;
  std::shared_ptr<const WaitingCount> count_;
};

}  // namespace packlock::detail
