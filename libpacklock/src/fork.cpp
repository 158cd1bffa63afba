#include "fork.hpp"

#include <pthread.h>
#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

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

// Abandoned objects' bytes, on a list no fork can leave locked.
struct Grave {
  Grave* next;
  std::size_t size;
};
std::atomic<Grave*> graves{nullptr};

}  // namespace

void keep_for_leak_checkers(const void* bytes, std::size_t size) noexcept {
  void* const block = std::malloc(sizeof(Grave) + size);
  if (!block) return;  // a leak report at worst
  auto* const grave = new (block) Grave{graves.load(std::memory_order_relaxed), size};
  std::memcpy(grave + 1, bytes, size);
  while (!graves.compare_exchange_weak(grave->next, grave, std::memory_order_release)) {
  }
}

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
    // Nobody in this process can hold it yet: every lock renews first. The
    // flag is only ever set here: a warning no owner has read yet (a fork
    // came between the renewal and the owner's first lock) stays.
    if (mutex_.try_lock()) {
      mutex_.unlock();
    } else {
      left_held_ = true;
      std::construct_at(&mutex_);  // its holder is gone; a fresh one replaces it
    }
    generation_.store(now, std::memory_order_release);
    return;
  }
}

}  // namespace packlock::detail
