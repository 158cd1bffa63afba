#include "engine.hpp"

#include <condition_variable>
#include <mutex>

#include <packlock/error.hpp>

#include "contention.hpp"

namespace packlock::detail {
namespace {

// A waiter whose owner blocks its own thread until its turn comes, the
// deadline passes, or its cancellation fires.
class BlockingWaiter final : public Waiter, Cancellation::Listener {
 public:
  enum class Outcome { turn, timeout, cancelled };

  BlockingWaiter(Mode mode, ThreadToken thread, Cancellation* cancel) noexcept
      : Waiter(mode, thread), cancel_(cancel) {}

  bool turn_has_come() {
    std::lock_guard lock(mutex_);
    return turn_;
  }

  Outcome wait_for_turn(const Deadline& deadline) {
    if (cancel_ && !cancel_->subscribe(*this)) return Outcome::cancelled;
    Outcome outcome;
    {
      std::unique_lock lock(mutex_);
      const auto woken = [this] { return turn_ || cancelled_; };
      if (!deadline) {
        cv_.wait(lock, woken);
      } else {
        cv_.wait_until(lock, *deadline, woken);
      }
      outcome = turn_ ? Outcome::turn : cancelled_ ? Outcome::cancelled : Outcome::timeout;
    }
    if (cancel_) cancel_->unsubscribe(*this);
    return outcome;
  }

 private:
  void turn_came() noexcept override {
    std::lock_guard lock(mutex_);
    turn_ = true;
    cv_.notify_one();
  }
  void cancelled() noexcept override {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    cv_.notify_one();
  }

  Cancellation* cancel_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool turn_ = false;
  bool cancelled_ = false;
};

// The waiter's turn has come: contend, then hold or leave the queue.
std::unique_ptr<Hold> take_turn(const std::shared_ptr<const Pack>& pack, BlockingWaiter& waiter,
                                const ContendRequest& request, std::error_code& ec) noexcept {
  Sidecar sidecar = contend(*pack, request, ec);
  if (ec) {
    pack->queue().withdraw(waiter);
    return nullptr;
  }
  pack->queue().granted(waiter);
  return std::make_unique<Hold>(pack, std::move(sidecar), waiter.mode(), waiter.thread());
}

std::unique_ptr<Hold> acquire_as(const std::shared_ptr<const Pack>& pack, ThreadToken thread,
                                 const ContendRequest& request, std::error_code& ec) noexcept {
  ec.clear();
  BlockingWaiter waiter(request.mode, thread, request.cancel);
  PackQueue& queue = pack->queue();
  const Deadline& deadline = request.deadline;
  switch (queue.admit(waiter, request.may_wait)) {
    case PackQueue::Admission::reentry:
    case PackQueue::Admission::busy:
      ec = errc::busy;
      return nullptr;
    case PackQueue::Admission::queued:
      switch (waiter.wait_for_turn(deadline)) {
        case BlockingWaiter::Outcome::turn: break;
        case BlockingWaiter::Outcome::timeout:
          queue.withdraw(waiter);
          ec = errc::timeout;
          return nullptr;
        case BlockingWaiter::Outcome::cancelled:
          queue.withdraw(waiter);
          ec = errc::cancelled;
          return nullptr;
      }
      break;
    case PackQueue::Admission::proceed:
      break;
  }
  return take_turn(pack, waiter, request, ec);
}

}  // namespace

std::unique_ptr<Hold> try_acquire(const std::shared_ptr<const Pack>& pack, Mode mode,
                                  std::error_code& ec, ThreadToken thread) noexcept {
  ContendRequest request;
  request.mode = mode;
  request.may_wait = false;
  return acquire_as(pack, thread, request, ec);
}

std::unique_ptr<Hold> acquire(const std::shared_ptr<const Pack>& pack, Mode mode,
                              const Deadline& deadline, std::error_code& ec,
                              Cancellation* cancel) noexcept {
  ContendRequest request;
  request.mode = mode;
  request.deadline = deadline;
  request.cancel = cancel;
  return acquire_as(pack, this_thread_token(), request, ec);
}

std::unique_ptr<Hold> acquire_ahead(const std::shared_ptr<const Pack>& pack, Mode mode,
                                    ThreadToken thread, const std::function<void()>& clear_the_way,
                                    std::error_code& ec) noexcept {
  ec.clear();
  BlockingWaiter waiter(mode, thread, nullptr);
  PackQueue& queue = pack->queue();
  const PackQueue::Admission admission = queue.admit_ahead(waiter);
  if (admission == PackQueue::Admission::reentry) {
    ec = errc::busy;
    return nullptr;
  }
  clear_the_way();
  if (admission != PackQueue::Admission::proceed && !waiter.turn_has_come()) {
    queue.withdraw(waiter);
    ec = errc::busy;
    return nullptr;
  }
  // What stands in the way now is another process's (or a foreign) holder.
  ContendRequest request;
  request.mode = mode;
  request.may_wait = false;
  request.steal = true;
  return take_turn(pack, waiter, request, ec);
}

}  // namespace packlock::detail
