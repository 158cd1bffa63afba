#include "request_registry.hpp"

#include <pthread.h>

#include <algorithm>

#include <packlock/error.hpp>

namespace packlock::detail {

void RequestEntry::grant(NamedHold hold, ThreadToken thread) noexcept {
  std::lock_guard lock(mutex_);
  hold_ = std::move(hold);
  since_ = std::chrono::system_clock::now();
  thread_.store(thread, std::memory_order_release);
  granted_.store(true, std::memory_order_release);
  // A hijack (a steal in another process, a stale recovery, `rm`) is a loss
  // as an in-process steal is. The callback runs on the heartbeat thread
  // and may outlive the request: it only raises the flag, and only while
  // the entry exists. No mutex: release() may be waiting on the heartbeat.
  try {
    hold_.on_lost([weak = weak_from_this()] {
      if (const auto entry = weak.lock()) entry->lost_.store(true, std::memory_order_release);
    });
  } catch (const std::bad_alloc&) {
    // Unreported then, but the heartbeat still marks the hold lost, and
    // release() asks the hold too.
  }
}

void RequestEntry::revoke() noexcept {
  // After the owner's release under way, if any: the lock is then free.
  std::lock_guard releasing(release_mutex_);
  NamedHold hold;
  {
    std::lock_guard lock(mutex_);
    if (!hold_.held()) return;
    lost_.store(true, std::memory_order_release);
    hold = std::move(hold_);
  }
  // Whatever LOCK_UN says, the descriptor is closed: the lock is gone.
  // Outside mutex_, which lost() and the re-entry check take: a cluster
  // hold's release is a round trip.
  (void)hold.release();
}

std::chrono::system_clock::time_point RequestEntry::since() const noexcept {
  std::lock_guard lock(mutex_);
  return since_;
}

std::int64_t RequestEntry::fencing_token() const noexcept {
  std::lock_guard lock(mutex_);
  return hold_.fencing_token();
}

bool RequestEntry::lost() const noexcept {
  if (lost_.load(std::memory_order_acquire)) return true;
  std::lock_guard lock(mutex_);
  return hold_.lost();
}

std::error_code RequestEntry::release() noexcept {
  std::lock_guard releasing(release_mutex_);
  NamedHold hold;
  {
    std::lock_guard lock(mutex_);
    if (hold_.lost()) lost_.store(true, std::memory_order_release);
    hold = std::move(hold_);
  }
  // Outside mutex_, as in revoke().
  if (lost_.load(std::memory_order_acquire)) {
    // A hijacked hold still locks its unlinked inode: let that go too.
    (void)hold.release();
    return errc::hijacked;
  }
  if (!hold.held()) return {};
  // A cluster hold may find its loss only now, as its key is deleted.
  if (const std::error_code ec = hold.release()) {
    if (ec != errc::hijacked) return errc::unlock_unsuccessful;
    lost_.store(true, std::memory_order_release);
    return ec;
  }
  return {};
}

RequestRegistry& RequestRegistry::instance() {
  static RequestRegistry* const registry = new RequestRegistry;
  return *registry;
}

RequestRegistry::RequestRegistry() {
  ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                   [] { instance().mutex_.unlock(); });
}

void RequestRegistry::add(std::shared_ptr<RequestEntry> entry) {
  std::lock_guard lock(mutex_);
  forget_parent_after_fork();
  entries_.push_back(std::move(entry));
}

void RequestRegistry::remove(const RequestEntry& entry) noexcept {
  std::lock_guard lock(mutex_);
  forget_parent_after_fork();
  const auto it = std::find_if(entries_.begin(), entries_.end(),
                               [&](const auto& e) { return e.get() == &entry; });
  if (it != entries_.end()) entries_.erase(it);
}

std::vector<std::shared_ptr<RequestEntry>> RequestRegistry::snapshot() {
  std::lock_guard lock(mutex_);
  forget_parent_after_fork();
  return entries_;
}

void RequestRegistry::revoke_holders(const Pack& pack) noexcept {
  // One queue per lock in this process, whichever path or manager named it.
  revoke_where([&](const RequestEntry& entry) {
    return entry.pack() && &entry.pack()->queue() == &pack.queue();
  });
}

void RequestRegistry::revoke_holders(const ClusterTarget& cluster) noexcept {
  revoke_where([&](const RequestEntry& entry) {
    return entry.cluster() && entry.cluster()->same_lock(cluster);
  });
}

// Revoked outside the registry's mutex: a cluster hold's release is a
// round trip, which would hold up every request of the process.
void RequestRegistry::revoke_where(const std::function<bool(const RequestEntry&)>& matches) noexcept {
  std::vector<std::shared_ptr<RequestEntry>> robbed;
  {
    std::lock_guard lock(mutex_);
    forget_parent_after_fork();
    for (const auto& entry : entries_) {
      if (matches(*entry)) robbed.push_back(entry);
    }
  }
  for (const auto& entry : robbed) entry->revoke();
}

std::optional<Mode> RequestRegistry::held_by_thread(const ClusterTarget& cluster, ThreadToken thread) {
  std::lock_guard lock(mutex_);
  forget_parent_after_fork();
  std::optional<Mode> held;
  for (const auto& entry : entries_) {
    if (entry->cluster() && entry->cluster()->same_lock(cluster) && entry->granted() &&
        entry->thread() == thread && !entry->lost()) {
      if (!held || entry->mode() == Mode::exclusive) held = entry->mode();
    }
  }
  return held;
}

void RequestRegistry::forget_parent_after_fork() noexcept {
  if (generation_ == fork_generation()) return;
  generation_ = fork_generation();
  entries_.clear();
}

}  // namespace packlock::detail
