#pragma once
// The heartbeat service: one thread for the whole process that keeps the
// sidecar mtime of every hold fresh and notices when a hold has lost its
// lock (SPEC section 1: never a thread per hold).
//
// Each hold is an entry. Entries of one heartbeat period form a FIFO in due
// order (an acquisition always joins at the back), so registering and
// unregistering take O(1) and allocate nothing. The thread sleeps until the
// earliest due time and then beats every entry due within an eighth of its
// period, so holds taken at scattered times cost a few wake-ups per period,
// not one each. Holds of one pack on one inode (shared holders) beating in
// the same round share one refresh and one check.
//
// A beat refreshes the mtime with futimens(UTIME_OMIT, UTIME_NOW): setting
// the mtime alone is reported by inotify as IN_MODIFY, which waiters do not
// watch, so a heartbeat wakes nobody. Then it checks that the sidecar path
// still names the held inode; if not (unlinked by a recovery, a steal or
// `rm`, or replaced), the hold is lost: `hijacked` goes to the pack's logger
// and the hold's on-lost callback runs, once. One inotify instance watches
// every held sidecar (IN_ATTRIB, which an unlink causes by changing the link
// count, IN_MOVE_SELF, IN_DELETE_SELF), so a hijack on this host is usually
// seen at once; the beat catches the rest (another host of a network
// filesystem). Loggers and callbacks run on the heartbeat thread, never
// under the service's lock.
//
// The watch of an inode is set only once a hold of it has lasted
// kWatchDelay, by the heartbeat thread, which then checks every hold of
// the inode at once (so a hijack during the delay is seen at that moment).
// Why: a process that has ever had an inotify mark waits, when it exits or
// closes the instance, for the kernel to tear the mark down (an SRCU grace
// period, 10-15 ms measured here), which would triple the cost of a short
// `packlock run`; a short hold never pays for it, and it costs a young hold
// nothing on its acquisition path either.
//
// Loggers and callbacks that block the thread delay beats. The thread does
// nothing for waiters: they wait in the kernel (kernel_wait.hpp).
//
// The same thread keeps the leases of cluster holds alive (Beater).
//
// Lifetime: every Pack shares the process's service; its thread starts at
// the first registration, and is stopped and joined when
// the last Pack goes. A forked child starts its own service, kept until it
// exits, and never destroys the copy of its parent's.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "sidecar.hpp"
#include "unique_fd.hpp"

namespace packlock::detail {

class Pack;
class HeartbeatService;

// The heartbeat thread's name (/proc/self/task/TID/comm).
inline constexpr const char* kHeartbeatThreadName = "packlock-beat";

// How long a hold lasts before its sidecar gets an inotify watch: the
// longest a hijack of a young hold on this host can go unnoticed.
inline constexpr std::chrono::milliseconds kWatchDelay{20};

// A hold's membership in the service; lives inside its Hold.
// Thread-safety: lost() and on_lost() from any thread; the rest is the
// service's, guarded by its mutex.
class HeartbeatEntry final {
 public:
  HeartbeatEntry() noexcept = default;
  HeartbeatEntry(const HeartbeatEntry&) = delete;
  HeartbeatEntry& operator=(const HeartbeatEntry&) = delete;

  bool lost() const noexcept { return lost_.load(std::memory_order_acquire); }
  // `callback` runs once when the hold is found lost, on the heartbeat
  // thread; at once, on this thread, if it already is.
  void on_lost(std::function<void()> callback);

 private:
  friend class HeartbeatService;
  struct Links {
    HeartbeatEntry* prev = nullptr;
    HeartbeatEntry* next = nullptr;
  };

  // Set by add(), constant while registered.
  const Pack* pack_ = nullptr;
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool refresh_ = false;
  // Guarded by the service's mutex.
  Links in_schedule_, in_watch_;
  void* schedule_ = nullptr;
  void* watch_ = nullptr;
  std::chrono::steady_clock::time_point due_{};
  bool registered_ = false;
  bool scheduled_ = false;  // in its schedule's FIFO: neither beating nor lost
  bool beating_ = false;    // a beat runs outside the lock
  // In a round: the entry whose refresh and check stand for this one's, and
  // (for a leader) whether its path was found naming another inode.
  HeartbeatEntry* leader_ = nullptr;
  bool path_gone_ = false;
  // Set once, by the heartbeat thread.
  std::atomic<bool> lost_{false};
  std::mutex callback_mutex_;
  std::function<void()> on_lost_;
};

// Another kind of hold the thread keeps alive every period: a cluster
// hold's lease (cluster_lock.hpp). Its beat runs on the heartbeat thread,
// outside the service's lock, so it may log and call back.
class Beater {
 public:
  Beater() noexcept = default;
  Beater(const Beater&) = delete;
  Beater& operator=(const Beater&) = delete;

 protected:
  ~Beater() = default;

 private:
  friend class HeartbeatService;
  // False once the hold is lost: it is not beaten again. `then` (if set)
  // runs on the thread once the beat is over, outside the service's lock,
  // so that it may release the hold (an on-lost callback).
  virtual bool beat(std::function<void()>& then) noexcept = 0;

  // Guarded by the service's mutex.
  std::chrono::nanoseconds period_{};
  std::chrono::steady_clock::time_point due_{};
  bool registered_ = false;
  bool beating_ = false;
  bool alive_ = true;   // the last beat's answer
  bool again_ = false;  // beat_soon() came during a beat
};

class HeartbeatService final : public std::enable_shared_from_this<HeartbeatService> {
 public:
  // The process's service (a new one in a forked child).
  static std::shared_ptr<HeartbeatService> shared();

  HeartbeatService(const HeartbeatService&) = delete;
  HeartbeatService& operator=(const HeartbeatService&) = delete;
  // Stops and joins the thread.
  ~HeartbeatService();

  // Starts beating the hold of `sidecar`, taken through `pack`, every
  // `pack.options().heartbeat`; `refresh` false watches without refreshing
  // (a read-only descriptor). Needs no system call unless the inode is not
  // watched yet or the thread must wake earlier than planned. Without
  // memory, a thread or inotify it does what it still can.
  void add(HeartbeatEntry& entry, const Pack& pack, const Sidecar& sidecar, bool refresh) noexcept;
  // Stops beating `entry`; returns once no beat of it is in flight, so the
  // caller may then close its descriptor.
  void remove(HeartbeatEntry& entry) noexcept;

  // Beats `beater` every `period`, the first time a period from now.
  // False without a thread to do it.
  bool add(Beater& beater, std::chrono::nanoseconds period) noexcept;
  // Stops beating it; returns once no beat of it is in flight.
  void remove(Beater& beater) noexcept;
  // Beats it as soon as the thread can (from any thread): something
  // outside, such as a watch, says the hold may be lost.
  void beat_soon(Beater& beater) noexcept;


  // The fork generation it belongs to; in a forked child, a service of an
  // earlier generation has no thread.
  unsigned generation() const noexcept { return generation_; }

 private:
  HeartbeatService() noexcept;
  // The deleter of every service: see heartbeat.cpp.
  static void dispose(HeartbeatService* service) noexcept;

  struct List {
    HeartbeatEntry* front = nullptr;
    HeartbeatEntry* back = nullptr;
  };
  struct Schedule {
    std::chrono::nanoseconds period;
    List entries;
  };
  // The inotify watch of one held inode, kept for one period after its
  // last hold goes: removing a watch stalls the caller while the kernel
  // tears it down, and the next hold of the pack usually comes sooner.
  struct Watch {
    int wd = -1;
    bool armed = false;  // its inotify watch was asked for (wd may still be -1: no inotify)
    List entries;
    unsigned round = 0;                // the last round that beat an entry of it
    HeartbeatEntry* leader = nullptr;  // that round's first entry
    std::chrono::steady_clock::time_point idle_until{};  // meaningful while entries is empty
  };
  using Call = std::function<void()>;

  static void thread_main(HeartbeatService* service, std::weak_ptr<HeartbeatService> weak);
  bool start_locked() noexcept;
  bool step(std::vector<Call>& calls);
  void sleep_until_planned() noexcept;
  void take_events();
  void beat_due(std::unique_lock<std::mutex>& lock, std::vector<Call>& calls);
  void join_round(HeartbeatEntry& entry) noexcept;
  void beat(HeartbeatEntry& entry, std::vector<Call>& calls);
  void beat_due_beaters(std::unique_lock<std::mutex>& lock, std::vector<Call>& calls);
  void forget_idle_watches(std::chrono::steady_clock::time_point now);
  void watch_left(Watch& watch, std::chrono::steady_clock::time_point until) noexcept;
  std::chrono::steady_clock::time_point next_wake() const noexcept;
  void check_now(Watch& watch, std::chrono::steady_clock::time_point now) noexcept;
  void arm_due_watches(std::chrono::steady_clock::time_point now);
  void arm(Watch& watch, const std::pair<dev_t, ino_t>& key, std::chrono::steady_clock::time_point now);
  Schedule& schedule_for(std::chrono::nanoseconds period);
  Watch& watch_for(const Sidecar& sidecar, std::chrono::steady_clock::time_point now);
  void signal() const noexcept;

  const unsigned generation_;
  mutable std::mutex mutex_;
  std::condition_variable beat_done_;
  int beat_waiters_ = 0;
  bool stop_ = false;
  bool started_ = false;
  std::chrono::steady_clock::time_point planned_wake_ = std::chrono::steady_clock::time_point::max();
  std::vector<std::unique_ptr<Schedule>> schedules_;
  std::map<std::pair<dev_t, ino_t>, Watch> watches_;
  std::unordered_map<int, std::pair<dev_t, ino_t>> watch_of_wd_;
  // Inodes whose watch is to be set, in due order (one delay for all).
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::pair<dev_t, ino_t>>> to_arm_;
  std::size_t idle_watches_ = 0;
  std::vector<int> forgotten_wds_;  // the thread's: removed after the lock
  std::chrono::steady_clock::time_point next_sweep_ = std::chrono::steady_clock::time_point::max();
  std::vector<HeartbeatEntry*> batch_;  // the thread's, reused between beats
  std::vector<Beater*> beaters_;          // few: one per cluster hold
  std::vector<Beater*> beater_batch_;     // the thread's
  unsigned round_ = 0;
  UniqueFd inotify_;
  UniqueFd wakeup_;  // eventfd: a registration due earlier, or stop
  std::thread thread_;
};

// The mtime refresh of a beat: 0 or the errno of futimens.
int refresh_mtime(int fd) noexcept;

// For tests: replaces refresh_mtime in beats (nullptr restores it), so a
// test can inject failures such as EIO.
using RefreshFunction = int (*)(int fd) noexcept;
void set_refresh_function_for_testing(RefreshFunction function) noexcept;

}  // namespace packlock::detail
