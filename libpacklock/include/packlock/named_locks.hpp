#pragma once
// The values of LockManager's two faces (lock_manager.hpp): ext_lock's
// handles and acquire options, and the Web Locks API's lock, request
// options and query() snapshot.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <packlock/mode.hpp>
#include <packlock/pack_lock.hpp>

namespace packlock {

namespace detail {
class ManagerState;
class RequestEntry;
class Ticket;
}  // namespace detail

// ---- ext_lock face -------------------------------------------------------

// A lock taken with acquire() or try_acquire(), for release(). `id` is
// unique per manager and never reused; `name` is the lock's name.
struct LockHandle {
  std::uint64_t id = 0;
  std::string name;
  // A cluster lock's fencing token (see ClusterLockHold); 0 for a lock
  // directory's.
  std::int64_t fencing_token = 0;

  friend bool operator==(const LockHandle&, const LockHandle&) = default;
};

struct AcquireOptions {
  Timeout timeout;              // how long acquire() may wait; none: no limit
  Mode mode = Mode::exclusive;  // ext_lock's locks are exclusive; shared too here
};

// ---- Web Locks face ------------------------------------------------------

// The lock a request's callback holds. Copies share the request.
class Lock {
 public:
  const std::string& name() const noexcept;
  Mode mode() const noexcept;
  // True once the lock was taken from this request: by a steal in this
  // process (at once), or through the hijack path (a steal in another
  // process, a stale recovery, `rm` of the sidecar: as soon as the heartbeat
  // service sees it, at once by inotify on this host). The callback runs on
  // without it, and the request then reports errc::hijacked
  // (== lock_errc::not_held). Thread-safe.
  bool lost() const noexcept;
  // A cluster lock's fencing token (see ClusterLockHold); 0 for a lock
  // directory's.
  std::int64_t fencing_token() const noexcept;

 private:
  friend class detail::Ticket;
  explicit Lock(std::shared_ptr<const detail::RequestEntry> entry) noexcept
      : entry_(std::move(entry)) {}

  std::shared_ptr<const detail::RequestEntry> entry_;
};

struct RequestOptions {
  Mode mode = Mode::exclusive;
  // Grant the lock only if that can be done at once: the callback otherwise
  // runs with std::nullopt. Never waits.
  bool if_available = false;
  // Take the lock now: this process's holders of the name (through any
  // LockManager) lose it at once, an exclusive holder in another process of
  // this host loses it through the hijack path (the sidecar is unlinked and
  // a new one locked; its heartbeat service tells it), and the request is
  // granted ahead of every queued request. Never waits. Holders that would
  // not be told are not robbed, and the request then fails with
  // errc::busy: a PackLock of the same pack in this process, flock(1),
  // shared holders elsewhere, a holder on another host.
  bool steal = false;
  // Give up waiting after this long: errc::timeout. None: no limit.
  Timeout timeout;
};
// As in Web Locks, steal with if_available, steal with Mode::shared, and a
// timeout with steal or if_available (which never wait) are refused with
// errc::conflicting_options (== std::errc::invalid_argument).

// One request in query()'s snapshot. `client_id` names the LockManager
// that made it: "<pid>/<n>" for the n-th manager of process <pid> when that
// process is this one; for another process, which the kernel shows only as
// a whole, "<pid>"; over etcd, "<pid>@<host>", or for a key without
// packlock's record (etcdctl's), the key.
struct LockInfo {
  std::string name;
  Mode mode = Mode::exclusive;
  std::string client_id;
  pid_t pid = 0;
  // Known for this process's requests, and over etcd for every party with
  // packlock's record; empty otherwise.
  std::string host{};
  std::string command{};
  // How long it has been held, or pending, when the snapshot was taken.
  std::chrono::nanoseconds held_for{0};
  // A cluster lock's: its key's create revision (a holder's fencing
  // token); 0 for a lock directory's.
  std::int64_t fencing_token = 0;
};

struct LockManagerSnapshot {
  std::vector<LockInfo> held;
  std::vector<LockInfo> pending;
};

}  // namespace packlock
