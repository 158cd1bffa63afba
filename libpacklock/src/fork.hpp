#pragma once
// What a fork(2) leaves behind in the child, and how the library copes.
//
// A child of a multi-threaded process starts with one thread and a copy of
// everything else: descriptors shared with the parent, the parent's
// in-process tables, and each mutex exactly as it was at that instant,
// possibly held by a thread the child does not have.

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

namespace packlock::detail {

// Counts the forks that led to this process. A child's copy of the lock
// table describes its parent's threads: it starts afresh (see PackQueue),
// and a hold taken before the fork is only closed in the child.
unsigned fork_generation() noexcept;

// Counts every fork, in the parent as in the child. A descriptor opened in
// an earlier epoch is an open file description shared with another process:
// flock(2) would take the two processes for one holder, so it is never
// reused for a new acquisition (see Pack::take_sidecar).
unsigned descriptor_epoch() noexcept;

// Keeps a copy of `size` bytes where a leak checker finds what they point
// to, on a list no fork can leave locked.
void keep_for_leak_checkers(const void* bytes, std::size_t size) noexcept;

// Replaces `object` by a new, empty one without running the old one's
// destructor: a thread the fork left behind may have been changing it.
template <typename T>
void abandon(T& object) noexcept {
  static_assert(std::is_nothrow_default_constructible_v<T>,
                "renewing must not allocate: it runs where nothing may throw");
  keep_for_leak_checkers(&object, sizeof object);
  std::construct_at(&object);
}

// A mutex a forked child can lock even when a thread of its parent held it
// at the fork (that thread, which would unlock it, does not exist in the
// child). The first lock in a new fork generation renews the mutex; if the
// old one was held, the data it guards may be half-changed, and its owner
// abandons that data instead of tidying it (see left_held_by_fork).
//
// The library's mutexes that a child reaches through objects made before
// the fork are of this kind; a fork made while a thread of the library is
// inside one of them then costs the child a little leaked memory, never a
// hang. Costs one atomic load per lock.
class ForkSafeMutex {
 public:
  ForkSafeMutex() noexcept = default;
  ForkSafeMutex(const ForkSafeMutex&) = delete;
  ForkSafeMutex& operator=(const ForkSafeMutex&) = delete;

  void lock() {
    renew_after_fork();
    mutex_.lock();
  }
  bool try_lock() {
    renew_after_fork();
    return mutex_.try_lock();
  }
  void unlock() { mutex_.unlock(); }

  // Under the lock: true, once, when the mutex was held at a fork, so what
  // it guards must be abandoned (see abandon), not cleared.
  bool left_held_by_fork() noexcept { return std::exchange(left_held_, false); }

 private:
  void renew_after_fork() noexcept {
    if (generation_.load(std::memory_order_acquire) != fork_generation()) renew();
  }
  void renew() noexcept;

  // The fork generation the mutex belongs to; while a thread renews it, that
  // generation with kRenewing set.
  static constexpr unsigned kRenewing = 1u << 31;
  std::atomic<unsigned> generation_{fork_generation()};
  bool left_held_ = false;
  std::mutex mutex_;
};

}  // namespace packlock::detail
