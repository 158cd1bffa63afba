#include "fork.hpp"

#include <pthread.h>
#include <sched.h>

#include <memory>

namespace packlock::detail {
namespace {

std::atomic<unsigned> forks{0};
std::atomic<unsigned> epochs{0};

void note_fork_in_parent() noexcept { epochs.fetch_add(1, std::memory_order_relaxed); }
void note_fork_in_child() noexcept {
  forks.fetch_add(1, std::memory_order_relaxed);
  epochs.fetch_add(1, std::memory_order_relaxed);
}

[[maybe_unused]] const int fork_handler_installed =
    ::pthread_atfork(nullptr, note_fork_in_parent, note_fork_in_child);

}  // namespace

unsigned fork_generation() noexcept { return forks.load(std::memory_order_relaxed); }
unsigned descriptor_epoch() noexcept { return epochs.load(std::memory_order_relaxed); }

void ForkSafeMutex::renew() noexcept {
  const unsigned now = fork_generation();
  for (;;) {
    unsigned seen = generation_.load(std::memory_order_acquire);
    if (seen == now) return;
    if (seen == (now | kRenewing)) {
      ::sched_yield();  // another thread of this process renews it, briefly
      continue;
    }
    // An earlier generation's mutex, or a renewal a fork cut short.
    if (!generation_.compare_exchange_weak(seen, now | kRenewing, std::memory_order_acquire))
      continue;
    // Nobody in this process can hold it yet: every lock renews first.
    left_held_ = !mutex_.try_lock();
    if (left_held_) {
      std::construct_at(&mutex_);  // its holder is gone; a fresh one replaces it
    } else {
      mutex_.unlock();
    }
    generation_.store(now, std::memory_order_release);
    return;
  }
}

}  // namespace packlock::detail
