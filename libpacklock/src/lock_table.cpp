#include "lock_table.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "wait_thread.hpp"

namespace packlock::detail {

ThreadToken this_thread_token() noexcept {
  static std::atomic<ThreadToken> last{kNoThread};
  thread_local const ThreadToken token = ++last;
  return token;
}

PackQueue::Admission PackQueue::admit(Waiter& waiter, bool may_wait) {
  std::lock_guard lock(mutex_);
  if (held_by(waiter.thread())) {
    if (waiter.mode() != Mode::shared || !holds_only_shared(waiter.thread())) {
      return Admission::reentry;
    }
    // A shared holder asking for another shared hold gets it at once, ahead
    // of the queue: queued behind an exclusive waiter, it would wait for its
    // own thread. Two shared holds never exclude each other in the kernel.
    waiter.turn_given_ = true;
    waiters_.insert(waiters_.begin(), &waiter);
    return Admission::proceed;
  }
  // An empty queue means nobody contends at the kernel level right now.
  if (waiters_.empty() && compatible(waiter.mode())) {
    waiter.turn_given_ = true;
    waiters_.push_back(&waiter);
    return Admission::proceed;
  }
  if (!may_wait) return Admission::busy;
  waiters_.push_back(&waiter);
  return Admission::queued;
}

PackQueue::Admission PackQueue::admit_ahead(Waiter& waiter) {
  std::lock_guard lock(mutex_);
  if (held_by(waiter.thread())) return Admission::reentry;
  const auto first_waiting = std::find_if(waiters_.begin(), waiters_.end(),
                                          [](const Waiter* w) { return !w->turn_given_; });
  const bool at_head = first_waiting == waiters_.begin();
  waiters_.insert(first_waiting, &waiter);
  if (at_head && compatible(waiter.mode())) {
    waiter.turn_given_ = true;
    return Admission::proceed;
  }
  return Admission::queued;
}

void PackQueue::granted(Waiter& waiter) {
  std::lock_guard lock(mutex_);
  // Normally the head; absent when a fork emptied this copy of the queue
  // while the waiter contended.
  if (const auto it = std::find(waiters_.begin(), waiters_.end(), &waiter); it != waiters_.end()) {
    waiters_.erase(it);
  }
  holders_.push_back({waiter.mode(), waiter.thread()});
  give_turn_to_head();
}

void PackQueue::withdraw(Waiter& waiter) {
  std::lock_guard lock(mutex_);
  const auto it = std::find(waiters_.begin(), waiters_.end(), &waiter);
  if (it == waiters_.end()) return;
  const bool was_head = it == waiters_.begin();
  waiters_.erase(it);
  if (was_head) give_turn_to_head();
}

void PackQueue::released(Mode mode, ThreadToken thread) {
  std::lock_guard lock(mutex_);
  const auto it = std::find_if(holders_.begin(), holders_.end(), [&](const Holder& h) {
    return h.mode == mode && h.thread == thread;
  });
  if (it != holders_.end()) holders_.erase(it);
  give_turn_to_head();
}

std::size_t PackQueue::waiting() {
  std::lock_guard lock(mutex_);
  return waiters_.size();
}

std::size_t PackQueue::holding() {
  std::lock_guard lock(mutex_);
  return holders_.size();
}

std::shared_ptr<WaitThread> PackQueue::wait_thread() {
  std::lock_guard lock(mutex_);
  if (!wait_thread_) wait_thread_ = std::make_shared<WaitThread>();
  return wait_thread_;
}

bool PackQueue::compatible(Mode mode) const noexcept {
  if (mode == Mode::shared) {
    return std::none_of(holders_.begin(), holders_.end(),
                        [](const Holder& h) { return h.mode == Mode::exclusive; });
  }
  return holders_.empty();
}

bool PackQueue::holds_only_shared(ThreadToken thread) const noexcept {
  return std::none_of(holders_.begin(), holders_.end(), [&](const Holder& h) {
    return h.thread == thread && h.mode == Mode::exclusive;
  });
}

bool PackQueue::held_by(ThreadToken thread) const noexcept {
  if (thread == kNoThread) return false;
  return std::any_of(holders_.begin(), holders_.end(),
                     [&](const Holder& h) { return h.thread == thread; });
}

void PackQueue::give_turn_to_head() noexcept {
  if (waiters_.empty()) return;
  Waiter& head = *waiters_.front();
  if (head.turn_given_ || !compatible(head.mode())) return;
  head.turn_given_ = true;
  head.turn_came();
}

LockTable& LockTable::instance() {
  static LockTable* const table = new LockTable;
  return *table;
}

LockTable::LockTable() {
  // The table's mutex is never held across a fork, and the child forgets
  // the parent's queues (a child reopens the packs it uses: pack.hpp).
  ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                   [] {
                     LockTable& table = instance();
                     table.queues_.clear();
                     table.mutex_.unlock();
                   });
}

std::shared_ptr<PackQueue> LockTable::queue_for(const std::string& key) {
  std::lock_guard lock(mutex_);
  std::weak_ptr<PackQueue>& slot = queues_[key];
  std::shared_ptr<PackQueue> queue = slot.lock();
  if (!queue) {
    queue = std::make_shared<PackQueue>();
    slot = queue;
    if (queues_.size() >= sweep_at_) forget_expired();
  }
  return queue;
}

// Amortised: runs when the map has doubled since the last sweep.
void LockTable::forget_expired() {
  std::erase_if(queues_, [](const auto& entry) { return entry.second.expired(); });
  sweep_at_ = std::max<std::size_t>(64, 2 * queues_.size());
}

}  // namespace packlock::detail
