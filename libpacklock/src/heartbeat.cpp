#include "heartbeat.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstdio>

#include "fork.hpp"
#include "lock_table.hpp"
#include "pack.hpp"

namespace packlock::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kHijackEvents = IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;

std::atomic<RefreshFunction> refresh_function{nullptr};

// The process's current service. Guarded by `mutex`, which a fork takes so
// that a child never inherits it locked.
//
// A forked child's service is `pinned`: it lives, and its thread runs,
// until the process ends. Two reasons. A child that goes on using packs
// opened before the fork has no Pack of its own to keep a service alive,
// so each hold would start and join a thread. And the C library gives the
// child's first new thread the cached stack, hence the pthread_t, of one
// of the parent's threads, which GCC 12's ThreadSanitizer still counts as
// alive: joining the child's thread aborts it ("dup thread with used id").
struct Registry {
  std::mutex mutex;
  std::weak_ptr<HeartbeatService> current;
  std::shared_ptr<HeartbeatService> pinned;
  unsigned generation = 0;
  std::vector<HeartbeatService*> kept_from_parent;  // a forked child's copies
};

Registry& registry() {
  static Registry* const instance = new Registry;  // never destroyed
  return *instance;
}

[[maybe_unused]] const int fork_handlers_installed = ::pthread_atfork(
    [] { registry().mutex.lock(); }, [] { registry().mutex.unlock(); },
    [] { registry().mutex.unlock(); });

// Intrusive FIFO operations on the entry lists of schedules and watches.
template <typename List, typename Links>
void push_back(List& list, HeartbeatEntry* entry, Links HeartbeatEntry::*links) noexcept {
  (entry->*links).prev = list.back;
  (entry->*links).next = nullptr;
  (list.back ? (list.back->*links).next : list.front) = entry;
  list.back = entry;
}

template <typename List, typename Links>
void push_front(List& list, HeartbeatEntry* entry, Links HeartbeatEntry::*links) noexcept {
  (entry->*links).prev = nullptr;
  (entry->*links).next = list.front;
  (list.front ? (list.front->*links).prev : list.back) = entry;
  list.front = entry;
}

template <typename List, typename Links>
void insert_after(List& list, HeartbeatEntry* at, HeartbeatEntry* entry,
                  Links HeartbeatEntry::*links) noexcept {
  (entry->*links).prev = at;
  (entry->*links).next = (at->*links).next;
  ((at->*links).next ? ((at->*links).next->*links).prev : list.back) = entry;
  (at->*links).next = entry;
}

template <typename List, typename Links>
void erase(List& list, HeartbeatEntry* entry, Links HeartbeatEntry::*links) noexcept {
  Links& own = entry->*links;
  (own.prev ? (own.prev->*links).next : list.front) = own.next;
  (own.next ? (own.next->*links).prev : list.back) = own.prev;
  own = Links{};
}

// Queues a call for after the round; without memory for it, it is dropped
// (the beat itself must finish, or remove() would wait for ever).
template <typename MakeCall>
void add_call(std::vector<std::function<void()>>& calls, MakeCall make) noexcept {
  try {
    if (auto call = make()) calls.push_back(std::move(call));
  } catch (...) {
  }
}

timespec to_timespec(Clock::duration d) noexcept {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(d);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d - secs);
  return {static_cast<time_t>(secs.count()), static_cast<long>(ns.count())};
}

}  // namespace

int refresh_mtime(int fd) noexcept {
  // The mtime alone: inotify reports that as IN_MODIFY, not IN_ATTRIB, so
  // waiters (who watch IN_ATTRIB for unlinks) are not woken by heartbeats.
  const timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  return ::futimens(fd, times) == 0 ? 0 : errno;
}

void set_refresh_function_for_testing(RefreshFunction function) noexcept {
  refresh_function.store(function, std::memory_order_release);
}

void HeartbeatEntry::on_lost(std::function<void()> callback) {
  std::unique_lock lock(callback_mutex_);
  if (!lost()) {
    on_lost_ = std::move(callback);
    return;
  }
  lock.unlock();
  if (callback) callback();
}

std::shared_ptr<HeartbeatService> HeartbeatService::shared() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::shared_ptr<HeartbeatService> service;
  if (r.generation == fork_generation()) service = r.current.lock();
  if (!service) {
    service = std::shared_ptr<HeartbeatService>(new HeartbeatService, dispose);
    r.current = service;
    r.generation = fork_generation();
    if (r.generation != 0) r.pinned = service;  // a forked child: see Registry
  }
  return service;
}

HeartbeatService::HeartbeatService() noexcept : generation_(fork_generation()) {}

// A forked child's copy of a service is the parent's, caught by the fork in
// whatever state its threads had it: its thread runs in the parent only, its
// lists may be mid-change, and a condition variable a parent thread waited
// on cannot even be destroyed. The child never destroys it.
void HeartbeatService::dispose(HeartbeatService* service) noexcept {
  if (service->generation_ != fork_generation()) {
    // Kept where a leak checker finds it.
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    try {
      r.kept_from_parent.push_back(service);
    } catch (...) {
    }
    return;
  }
  delete service;
}

HeartbeatService::~HeartbeatService() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  signal();
  if (!thread_.joinable()) return;
  if (thread_.get_id() != std::this_thread::get_id()) {
    thread_.join();
    return;
  }
  // Destroyed on its own thread, by a callback that dropped the last
  // reference: the thread returns right after this and nothing needs to
  // wait for it. Left joinable, it would be a leaked thread at exit.
  thread_.detach();
}

bool HeartbeatService::start_locked() noexcept try {
  if (started_) return true;
  if (!wakeup_) wakeup_ = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wakeup_) return false;  // without it the thread could not be stopped
  if (!inotify_) inotify_ = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  // The thread is born with every signal blocked: a signal sent to the
  // process (SIGCHLD, SIGTERM, ...) is the application's and must reach one
  // of its own threads, never wait in the library's.
  sigset_t all, previous;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  try {
    thread_ = std::thread(thread_main, this, weak_from_this());
  } catch (...) {
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    throw;
  }
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ::pthread_setname_np(thread_.native_handle(), kHeartbeatThreadName);  // for ps -L and tests
  started_ = true;
  return true;
} catch (...) {
  return false;
}

void HeartbeatService::signal() const noexcept {
  if (!wakeup_) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(wakeup_.get(), &one, sizeof one);
}

void HeartbeatService::add(HeartbeatEntry& entry, const Pack& pack, const Sidecar& sidecar,
                           bool refresh) noexcept try {
  entry.pack_ = &pack;
  entry.fd_ = sidecar.fd.get();
  entry.dev_ = sidecar.dev;
  entry.ino_ = sidecar.ino;
  entry.refresh_ = refresh;
  const auto period = pack.options().heartbeat;
  const auto now = Clock::now();
  std::lock_guard lock(mutex_);
  if (stop_ || !start_locked()) return;
  Watch& watch = watch_for(sidecar, now);
  Schedule& schedule = schedule_for(period);
  if (!watch.entries.front && watch.idle_until != Clock::time_point{}) {
    --idle_watches_;  // in use again before it was forgotten
    watch.idle_until = {};
  }
  entry.watch_ = &watch;
  entry.schedule_ = &schedule;
  entry.due_ = now + period;
  // Beside a hold of the same pack and inode, if there is one: from its
  // first beat on, the two share a refresh and a check (earlier than its
  // own period would have it, never later).
  HeartbeatEntry* const peer = watch.entries.back;
  if (peer && peer->scheduled_ && peer->pack_ == entry.pack_ && peer->refresh_ == refresh &&
      peer->schedule_ == &schedule && peer->due_ <= entry.due_) {
    entry.due_ = peer->due_;
    insert_after(schedule.entries, peer, &entry, &HeartbeatEntry::in_schedule_);
  } else {
    push_back(schedule.entries, &entry, &HeartbeatEntry::in_schedule_);
  }
  push_back(watch.entries, &entry, &HeartbeatEntry::in_watch_);
  entry.registered_ = entry.scheduled_ = true;
  // The thread plans its wake-ups; only a hold due before the next one
  // costs a system call.
  if (entry.due_ < planned_wake_) {
    planned_wake_ = entry.due_;
    signal();
  }
} catch (...) {
  // No memory for a new schedule or watch: this hold goes without heartbeat.
}

void HeartbeatService::remove(HeartbeatEntry& entry) noexcept {
  std::unique_lock lock(mutex_);
  if (!entry.registered_) return;
  while (entry.beating_) {
    ++beat_waiters_;
    beat_done_.wait(lock);
    --beat_waiters_;
  }
  auto& schedule = *static_cast<Schedule*>(entry.schedule_);
  if (entry.scheduled_) erase(schedule.entries, &entry, &HeartbeatEntry::in_schedule_);
  auto& watch = *static_cast<Watch*>(entry.watch_);
  erase(watch.entries, &entry, &HeartbeatEntry::in_watch_);
  if (!watch.entries.front) watch_left(watch, entry.due_);
  entry.registered_ = entry.scheduled_ = false;
}

bool HeartbeatService::add(Beater& beater, std::chrono::nanoseconds period) noexcept try {
  std::lock_guard lock(mutex_);
  if (stop_ || !start_locked()) return false;
  beaters_.push_back(&beater);
  beater.period_ = period;
  beater.due_ = Clock::now() + period;
  beater.registered_ = true;
  if (beater.due_ < planned_wake_) {
    planned_wake_ = beater.due_;
    signal();
  }
  return true;
} catch (...) {
  return false;
}

void HeartbeatService::remove(Beater& beater) noexcept {
  std::unique_lock lock(mutex_);
  if (!beater.registered_) return;
  while (beater.beating_) {
    ++beat_waiters_;
    beat_done_.wait(lock);
    --beat_waiters_;
  }
  std::erase(beaters_, &beater);
  beater.registered_ = false;
}

void HeartbeatService::beat_soon(Beater& beater) noexcept {
  std::lock_guard lock(mutex_);
  if (!beater.registered_ || (!beater.beating_ && !beater.alive_)) return;
  // One that beats now beats again right after.
  if (beater.beating_) {
    beater.again_ = true;
  } else {
    beater.due_ = Clock::now();
  }
  planned_wake_ = Clock::now();
  signal();
}

void HeartbeatService::beat_due_beaters(std::unique_lock<std::mutex>& lock,
                                        std::vector<Call>& calls) {
  const auto now = Clock::now();
  beater_batch_.clear();
  for (Beater* beater : beaters_) {
    if (beater->beating_ || beater->due_ > now + beater->period_ / 8) continue;
    beater_batch_.push_back(beater);  // may throw: nothing is marked yet
  }
  if (beater_batch_.empty()) return;
  calls.reserve(calls.size() + beater_batch_.size());  // the same
  for (Beater* beater : beater_batch_) {
    beater->beating_ = true;
    beater->again_ = false;
  }
  lock.unlock();
  // remove() waits while a beater beats: the thread alone touches it.
  for (Beater* beater : beater_batch_) {
    Call then;
    beater->alive_ = beater->beat(then);
    if (then) calls.push_back(std::move(then));  // reserved: does not throw
  }
  lock.lock();
  const auto after = Clock::now();
  for (Beater* beater : beater_batch_) {
    beater->beating_ = false;
    // A lost hold is not beaten again; it stays registered until removed.
    if (!beater->alive_) {
      beater->due_ = Clock::time_point::max();
    } else {
      beater->due_ = beater->again_ ? after : after + beater->period_;
    }
  }
  if (beat_waiters_ > 0) beat_done_.notify_all();
}

void HeartbeatService::watch_left(Watch& watch, Clock::time_point until) noexcept {
  ++idle_watches_;
  // About a period from now (the due time of the hold that left), without
  // reading the clock on the release path.
  watch.idle_until = std::max(until, Clock::time_point{} + Clock::duration(1));
  // No wake-up: the thread already plans one for the hold that just left.
  next_sweep_ = std::min(next_sweep_, watch.idle_until);
}

HeartbeatService::Schedule& HeartbeatService::schedule_for(std::chrono::nanoseconds period) {
  for (const auto& schedule : schedules_) {
    if (schedule->period == period) return *schedule;
  }
  schedules_.push_back(std::make_unique<Schedule>(Schedule{period, {}}));
  return *schedules_.back();
}

// The watch of the held inode; its inotify watch is asked for kWatchDelay
// from now (see the header), by the thread.
HeartbeatService::Watch& HeartbeatService::watch_for(const Sidecar& sidecar, Clock::time_point now) {
  auto [it, inserted] = watches_.try_emplace({sidecar.dev, sidecar.ino});
  Watch& watch = it->second;
  if (watch.armed || !inotify_) return watch;
  const auto arm_at = now + kWatchDelay;
  to_arm_.emplace_back(arm_at, it->first);
  watch.armed = true;
  if (arm_at < planned_wake_) {
    planned_wake_ = arm_at;
    signal();
  }
  return watch;
}

void HeartbeatService::arm_due_watches(Clock::time_point now) {
  while (!to_arm_.empty() && to_arm_.front().first <= now) {
    const auto key = to_arm_.front().second;
    to_arm_.pop_front();
    const auto found = watches_.find(key);
    if (found != watches_.end()) arm(found->second, key, now);
  }
}

void HeartbeatService::arm(Watch& watch, const std::pair<dev_t, ino_t>& key, Clock::time_point now) {
  if (watch.wd >= 0) return;  // queued twice: forgotten and taken again
  const HeartbeatEntry* const holder = watch.entries.front;
  if (!holder) {
    watch.armed = false;  // every hold left before its delay: no watch needed
    return;
  }
  // The descriptor's /proc link names exactly the inode we hold, even if
  // the path has changed since.
  std::array<char, 32> link;
  std::snprintf(link.data(), link.size(), "/proc/self/fd/%d", holder->fd_);
  watch.wd = ::inotify_add_watch(inotify_.get(), link.data(), kHijackEvents);
  if (watch.wd >= 0) watch_of_wd_[watch.wd] = key;
  // A hijack before the watch existed sent no event to us: look now.
  check_now(watch, now);
}

void HeartbeatService::thread_main(HeartbeatService* service, std::weak_ptr<HeartbeatService> weak) {
  std::vector<Call> calls;
  for (;;) {
    bool running = true;
    try {
      running = service->step(calls);
    } catch (const std::bad_alloc&) {
      // Out of memory for a batch or an event: what was left is beaten in
      // a later round.
    }
    if (!running) return;
    if (calls.empty()) continue;
    // Loggers and callbacks run with the service held, so that one which
    // drops the last reference destroys it here, after they have all run.
    std::shared_ptr<HeartbeatService> alive = weak.lock();
    if (!alive) return;
    for (Call& call : calls) {
      try {
        call();
      } catch (...) {
      }
    }
    calls.clear();
    alive.reset();
    if (weak.expired()) return;  // destroyed, or being destroyed by a joiner
  }
}

bool HeartbeatService::step(std::vector<Call>& calls) {
  sleep_until_planned();
  take_events();
  std::unique_lock lock(mutex_);
  if (stop_) return false;
  arm_due_watches(Clock::now());
  beat_due(lock, calls);
  beat_due_beaters(lock, calls);
  const auto now = Clock::now();
  if (idle_watches_ > 0 && now >= next_sweep_) forget_idle_watches(now);
  planned_wake_ = next_wake();
  lock.unlock();
  // Removing a watch stalls until the kernel has torn it down: not under
  // the lock, which acquisitions and releases take.
  for (const int wd : forgotten_wds_) ::inotify_rm_watch(inotify_.get(), wd);
  forgotten_wds_.clear();
  return true;
}

void HeartbeatService::sleep_until_planned() noexcept {
  Clock::time_point until;
  {
    std::lock_guard lock(mutex_);
    if (stop_) return;
    until = planned_wake_;
  }
  const auto now = Clock::now();
  timespec timeout{};
  const timespec* limit = nullptr;  // no beat planned: until woken
  if (until != Clock::time_point::max()) {
    timeout = to_timespec(std::max(until - now, Clock::duration::zero()));
    limit = &timeout;
  }
  pollfd fds[2] = {{wakeup_.get(), POLLIN, 0}, {inotify_.get(), POLLIN, 0}};
  ::ppoll(fds, 2, limit, nullptr);
  std::uint64_t count;
  [[maybe_unused]] const auto drained = ::read(wakeup_.get(), &count, sizeof count);
}

// Entries on a watched inode whose events arrived are checked at once.
void HeartbeatService::take_events() {
  if (!inotify_) return;
  alignas(inotify_event) std::array<char, 4096> buffer;
  for (;;) {
    const ssize_t n = ::read(inotify_.get(), buffer.data(), buffer.size());
    if (n <= 0) return;
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer.data() + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if (event->mask & IN_Q_OVERFLOW) {
        for (auto& [key, watch] : watches_) check_now(watch, now);
        continue;
      }
      const auto found = watch_of_wd_.find(event->wd);
      if (found == watch_of_wd_.end()) continue;
      const auto watch = watches_.find(found->second);
      if (event->mask & IN_IGNORED) {  // the inode is gone, or we removed the watch
        watch_of_wd_.erase(found);
        if (watch == watches_.end()) continue;
        watch->second.wd = -1;
        watch->second.armed = false;  // a later hold of it asks again
        // Holds registered meanwhile are of a new inode that got the freed
        // one's number (ext4 reuses them at once): watch that one now.
        if (watch->second.entries.front) {
          watch->second.armed = true;
          arm(watch->second, watch->first, now);
          continue;
        }
      }
      if (watch != watches_.end()) check_now(watch->second, now);
    }
  }
}

void HeartbeatService::check_now(Watch& watch, Clock::time_point now) noexcept {
  for (HeartbeatEntry* entry = watch.entries.front; entry; entry = entry->in_watch_.next) {
    if (!entry->scheduled_) continue;
    auto& schedule = *static_cast<Schedule*>(entry->schedule_);
    erase(schedule.entries, entry, &HeartbeatEntry::in_schedule_);
    entry->due_ = now;
    push_front(schedule.entries, entry, &HeartbeatEntry::in_schedule_);
  }
}

void HeartbeatService::beat_due(std::unique_lock<std::mutex>& lock, std::vector<Call>& calls) {
  const auto now = Clock::now();
  batch_.clear();
  ++round_;
  for (const auto& schedule : schedules_) {
    const auto horizon = now + schedule->period / 8;
    while (HeartbeatEntry* entry = schedule->entries.front) {
      if (entry->due_ > horizon) break;
      batch_.push_back(entry);  // first: it may throw
      erase(schedule->entries, entry, &HeartbeatEntry::in_schedule_);
      entry->scheduled_ = false;
      entry->beating_ = true;
      join_round(*entry);
    }
  }
  if (batch_.empty()) return;
  lock.unlock();
  // remove() waits while an entry beats: its descriptor and pack stay valid.
  for (HeartbeatEntry* entry : batch_) beat(*entry, calls);
  lock.lock();
  const auto after = Clock::now();
  for (HeartbeatEntry* entry : batch_) {
    entry->beating_ = false;
    if (!entry->registered_ || entry->lost()) continue;
    auto& schedule = *static_cast<Schedule*>(entry->schedule_);
    entry->due_ = after + schedule.period;
    push_back(schedule.entries, entry, &HeartbeatEntry::in_schedule_);
    entry->scheduled_ = true;
  }
  if (beat_waiters_ > 0) beat_done_.notify_all();
}

// The first entry of a round for a (pack, inode) leads; the others with
// the same refresh take its result (shared holders of one pack).
void HeartbeatService::join_round(HeartbeatEntry& entry) noexcept {
  auto& watch = *static_cast<Watch*>(entry.watch_);
  HeartbeatEntry* const leader = watch.round == round_ ? watch.leader : nullptr;
  if (leader && leader->pack_ == entry.pack_ && leader->refresh_ == entry.refresh_) {
    entry.leader_ = leader;
    return;
  }
  entry.leader_ = nullptr;
  watch.round = round_;
  watch.leader = &entry;
}

void HeartbeatService::beat(HeartbeatEntry& entry, std::vector<Call>& calls) {
  const Pack& pack = *entry.pack_;
  if (entry.leader_) {
    // The leader comes first in the batch and cannot leave during it.
    entry.path_gone_ = entry.leader_->path_gone_;
  } else {
    if (entry.refresh_) {
      const RefreshFunction replaced = refresh_function.load(std::memory_order_acquire);
      if (const int err = replaced ? replaced(entry.fd_) : refresh_mtime(entry.fd_)) {
        add_call(calls, [&] {
          return pack.log_call(LogEventKind::refresh_failed,
                               "heartbeat could not refresh the sidecar's mtime",
                               {err, std::system_category()});
        });
      }
    }
    entry.path_gone_ = !pack.path_names(entry.dev_, entry.ino_);
  }
  if (!entry.path_gone_) return;
  std::function<void()> on_lost;
  {
    std::lock_guard lock(entry.callback_mutex_);
    entry.lost_.store(true, std::memory_order_release);
    on_lost = std::move(entry.on_lost_);
    entry.on_lost_ = nullptr;
  }
  add_call(calls, [&] {
    return pack.log_call(LogEventKind::hijacked, "lock lost: the sidecar was unlinked or replaced",
                         {});
  });
  add_call(calls, [&] { return std::move(on_lost); });
}

void HeartbeatService::forget_idle_watches(Clock::time_point now) {
  next_sweep_ = Clock::time_point::max();
  for (auto it = watches_.begin(); it != watches_.end();) {
    Watch& watch = it->second;
    if (watch.entries.front || watch.idle_until == Clock::time_point{}) {
      ++it;
    } else if (watch.idle_until > now) {
      next_sweep_ = std::min(next_sweep_, watch.idle_until);
      ++it;
    } else {
      if (watch.wd >= 0) {
        forgotten_wds_.push_back(watch.wd);
        watch_of_wd_.erase(watch.wd);
      }
      --idle_watches_;
      it = watches_.erase(it);
    }
  }
}

Clock::time_point HeartbeatService::next_wake() const noexcept {
  Clock::time_point next = idle_watches_ > 0 ? next_sweep_ : Clock::time_point::max();
  if (!to_arm_.empty()) next = std::min(next, to_arm_.front().first);
  for (const auto& schedule : schedules_) {
    if (schedule->entries.front) next = std::min(next, schedule->entries.front->due_);
  }
  for (const Beater* beater : beaters_) next = std::min(next, beater->due_);
  return next;
}

}  // namespace packlock::detail
