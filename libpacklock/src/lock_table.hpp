#pragma once
// The process-wide lock table.
//
// Why it exists: flock(2) locks belong to open file descriptions, so two
// opens of one sidecar in this process exclude each other exactly as two
// processes do, and a thread that asks again for a pack it holds would wait
// on itself forever. The table knows, per canonical pack, who in this process
// holds it (mode and thread) and who waits, in FIFO order. Only the head of a
// queue contends at the kernel level; the others wait for their turn here, so
// N waiters in one process cost the kernel (and the waker) one.

#include <memory>
#include <mutex>
#include <string>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include <packlock/mode.hpp>

namespace packlock::detail {

class WaitThread;

// Identifies a thread for the re-entry check. Unlike std::thread::id it is
// never reused, so a hold left by a thread that has exited is never taken
// for re-entry by a new thread. 0 means "not tied to a thread".
using ThreadToken = std::uint64_t;
inline constexpr ThreadToken kNoThread = 0;
ThreadToken this_thread_token() noexcept;

// One request for a pack, queued until it may contend at the kernel level.
// Not thread-safe on its own: every member is guarded by its PackQueue.
class Waiter {
 public:
  // `thread` is the thread that will hold the lock, for the re-entry check;
  // kNoThread when holding is not tied to a thread (async waits). Re-entry
  // is judged by the thread that acquired: a hold moved to another thread
  // still counts as its acquirer's.
  Waiter(Mode mode, ThreadToken thread) noexcept : mode_(mode), thread_(thread) {}
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  Mode mode() const noexcept { return mode_; }
  ThreadToken thread() const noexcept { return thread_; }

 protected:
  ~Waiter() = default;

 private:
  friend class PackQueue;
  // The waiter became the head and is compatible with this process's
  // holders: it may now contend at the kernel level. Called once, with the
  // queue's mutex held, so it must only record the fact and wake its owner.
  virtual void turn_came() noexcept = 0;

  Mode mode_;
  ThreadToken thread_;
  bool turn_given_ = false;
};

// The in-process state of one canonical pack. All members are guarded by one
// mutex; every call takes it.
class PackQueue final {
 public:
  PackQueue() = default;
  PackQueue(const PackQueue&) = delete;
  PackQueue& operator=(const PackQueue&) = delete;

  enum class Admission {
    proceed,  // the waiter is the head: contend at the kernel, then granted() or withdraw()
    queued,   // turn_came() will be called; then as for proceed
    reentry,  // the waiter's thread already holds this pack (but for shared after shared)
    busy,     // may_wait was false and the waiter could not proceed at once
  };

  Admission admit(Waiter& waiter, bool may_wait);
  // For a steal: places the waiter ahead of every waiter whose turn has not
  // come (a head already contending keeps its place). proceed when it is
  // then the head and compatible with this process's holders; otherwise
  // queued, and turn_came() follows once the holders in its way release.
  Admission admit_ahead(Waiter& waiter);
  // The head obtained the kernel lock: it leaves the queue and becomes a holder.
  void granted(Waiter& waiter);
  // The waiter leaves without the lock (timeout, cancellation, error).
  void withdraw(Waiter& waiter);
  // A holder admitted with (mode, thread) released its lock.
  void released(Mode mode, ThreadToken thread);

  // Snapshot counts, for diagnostics and tests.
  std::size_t waiting();
  std::size_t holding();

  // The pack's wait thread for asynchronous waiters (wait_thread.hpp),
  // made at the first asynchronous wait.
  std::shared_ptr<WaitThread> wait_thread();

 private:
  struct Holder {
    Mode mode;
    ThreadToken thread;
  };

  bool compatible(Mode mode) const noexcept;
  bool held_by(ThreadToken thread) const noexcept;
  bool holds_only_shared(ThreadToken thread) const noexcept;
  void give_turn_to_head() noexcept;

  std::mutex mutex_;
  std::vector<Holder> holders_;
  // Queues are short; erasing the head moves a few pointers.
  std::vector<Waiter*> waiters_;
  std::shared_ptr<WaitThread> wait_thread_;
};

// Canonical pack key -> PackQueue. Queues live as long as a Pack refers to
// them; the map keeps only weak references and forgets expired ones. A
// forked child starts with an empty table (pthread_atfork): the parent's
// queues describe the parent's threads.
class LockTable final {
 public:
  // Never destroyed: holds in static objects may be released after the
  // static destructors of this library have run.
  static LockTable& instance();

  std::shared_ptr<PackQueue> queue_for(const std::string& key);

 private:
  LockTable();
  void forget_expired();

  std::mutex mutex_;
  std::unordered_map<std::string, std::weak_ptr<PackQueue>> queues_;
  std::size_t sweep_at_ = 64;
};

}  // namespace packlock::detail
