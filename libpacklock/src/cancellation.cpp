#include "cancellation.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

namespace packlock::detail {

void Cancellation::cancel() noexcept {
  std::lock_guard lock(mutex_);
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  if (event_) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(event_.get(), &one, sizeof one);
  }
  for (Listener* listener : listeners_) listener->cancelled();
  listeners_.clear();
}

int Cancellation::native_handle() const noexcept {
  std::lock_guard lock(mutex_);
  if (!event_) {
    // Created readable when the cancellation came first.
    event_ = UniqueFd(::eventfd(cancelled() ? 1 : 0, EFD_NONBLOCK | EFD_CLOEXEC));
  }
  return event_.get();
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

}  // namespace packlock::detail
