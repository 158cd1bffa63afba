#include "fork.hpp"

#include <pthread.h>

#include <atomic>

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

}  // namespace packlock::detail
