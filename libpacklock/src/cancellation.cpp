#include "cancellation.hpp"

#include <algorithm>

namespace packlock::detail {

void Cancellation::cancel() noexcept {
  std::lock_guard lock(mutex_);
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  interrupt_.interrupt();
  for (Listener* listener : listeners_) listener->cancelled();
  listeners_.clear();
}

bool Cancellation::subscribe(Listener& listener) {
  std::lock_guard lock(mutex_);
  if (cancelled()) return false;
  listeners_.push_back(&listener);
  return true;
}

void Cancellation::unsubscribe(Listener& listener) noexcept {
  std::lock_guard lock(mutex_);
  std::erase(listeners_, &listener);
}

std::size_t Cancellation::listener_count() {
  std::lock_guard lock(mutex_);
  return listeners_.size();
}

}  // namespace packlock::detail
