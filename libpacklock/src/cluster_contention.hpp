#pragma once
// One contention for a cluster lock (cluster_lock.hpp), driven by
// contend_on() (contention.hpp):
//
//   attempt    grants the hold's lease (once), puts its key (once), and
//              looks for the key before it that excludes it (the put
//              and the first look are one transaction);
//   wait       watches that key's deletion (or the wait's end), then the
//              attempt looks again; a waiter with one key ahead that
//              excludes it watches every key of the name instead, and
//              holds, without looking, once that key goes and its own
//              is still there;
//   steal      deletes every key ahead (after_busy), if each is packlock's
//              and so will be noticed, then the attempt looks again.
//
// Staleness is etcd's: a key goes with its lease.
//
// Each round trip is made one of two ways. A blocking contention makes it
// on the calling thread. An asynchronous one sends it and returns
// Step::pending; the answer (or the watch's end) arrives on a gRPC thread,
// which calls `resume`, and the next contend_on() takes it in its attempt.
// No thread waits for it.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>
#include <system_error>

#include "cluster_lock.hpp"
#include "contention.hpp"

namespace packlock::detail {

class ClusterHold::Contention final {
 public:
  // Blocking.
  Contention(ClusterHold& hold, const ClusterLockRequest& request) noexcept;
  // Asynchronous: `resume` runs (on a gRPC thread) once an answer is in.
  Contention(ClusterHold& hold, const ClusterLockRequest& request, std::function<void()> resume) noexcept;
  ~Contention();
  Contention(const Contention&) = delete;
  Contention& operator=(const Contention&) = delete;

  Step attempt(std::error_code& ec) noexcept;
  // A steal deletes the keys ahead (see ClusterLock::steal); anything else
  // waits.
  Step after_busy(std::error_code& ec) noexcept;
  Step wait(std::error_code& ec) noexcept;
  // The hold's destructor revokes the lease, and the key with it.
  void give_up() noexcept {}

  // Ends an asynchronous wait under way, for the loop to look once more and
  // find its request over (cancelled, past its deadline). Any thread.
  void interrupt() noexcept;

  // Whether the lock was waited for (so its key was put well before).
  bool waited() const noexcept { return waited_; }

 private:
  enum class Call { grant, enter, look, steal };
  struct Predecessor {
    std::string key;
    std::int64_t revision = 0;  // of the answer that saw it
  };
  // A key ahead, for a steal.
  struct Ahead {
    std::string key;
    std::int64_t created = 0;  // its create revision
    bool told = false;         // packlock's: its holder or waiter will notice
  };
  struct Exchange;
  struct LineAhead;

  // Makes `call` (blocking), or sends it (Step::pending), or takes its
  // answer when it is in: Step::again once it is applied.
  Step exchange(Call call, std::error_code& ec);
  std::error_code apply(Call call);
  bool take_spare_lease();
  bool is_answered(Call call);
  void take_look(const etcdserverpb::RangeResponse& keys, std::int64_t revision);
  std::error_code error_of(Call call, const grpc::Status& status);
  // Deletes the keys ahead, if each is still the one seen (the same create
  // revision).
  etcdserverpb::TxnRequest steal_request() const;
  Step start_watch(std::error_code& ec);
  Step take_watch_end(std::error_code& ec);
  // The watch a wait makes; `on_end` runs once, on a gRPC thread.
  std::shared_ptr<KeyDeletion> watch_ahead(std::function<void(std::error_code)> on_end);
  // Whether the last wait saw the line ahead of the key go while the key
  // stayed: the lock is then held, with no look. Once.
  bool take_cleared_line();

  ClusterHold& hold_;
  const ClusterLockRequest& request_;
  const std::function<void()> resume_;  // empty: blocking
  const std::unique_ptr<Exchange> exchange_;
  bool grant_asked_ = false;
  bool entered_ = false;
  bool looked_ = false;  // in this attempt (the put looks as well)
  bool waited_ = false;
  int failed_watches_ = 0;  // in a row
  std::optional<Predecessor> before_;
  std::vector<std::string> excluding_;  // the keys ahead that exclude it, as the look saw them
  std::vector<Ahead> ahead_;  // every key ahead, when stealing
  int steals_ = 0;
};

}  // namespace packlock::detail
