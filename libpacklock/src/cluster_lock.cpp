#include "cluster_lock.hpp"

#include <algorithm>

#include <condition_variable>
#include <cstdio>
#include <mutex>

#include <packlock/error.hpp>

#include "cluster_contention.hpp"

namespace packlock::detail {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;

// The record's line for the key's value: without the padding a sidecar
// needs, with the lease id as its token.
std::string record_value(OwnerRecord record, Mode mode, std::int64_t lease,
                         std::chrono::system_clock::time_point at = std::chrono::system_clock::now()) {
  char token[33];
  std::snprintf(token, sizeof token, "%032llx", static_cast<unsigned long long>(lease));
  record.mode = mode;
  record.token = token;
  record.acquired_at = at;
  std::string line = format_owner_record(record);
  line.erase(line.find('\n') + 1);
  return line;
}

// The transaction of a look: the last key created before `revision` under
// `prefix` that may exclude a holder in `mode`, and whether `own` is still
// there (its lease may have expired during a wait). Two reads, one round
// trip.
etcdserverpb::TxnRequest look_request(const std::string& prefix, const std::string& own,
                                      std::int64_t revision, Mode mode, bool every_key) {
  etcdserverpb::TxnRequest txn;
  RangeRequest* before = txn.add_success()->mutable_request_range();
  before->set_key(prefix);
  before->set_range_end(prefix_end(prefix));
  before->set_max_create_revision(revision - 1);
  before->set_sort_target(RangeRequest::CREATE);
  before->set_sort_order(RangeRequest::DESCEND);
  // No limit: keys of longer names ("<name>/b/<lease>") share the prefix
  // and are passed over (take_look), so the key before may be further on.
  if (mode == Mode::exclusive && !every_key) before->set_keys_only(true);
  RangeRequest* self = txn.add_success()->mutable_request_range();
  self->set_key(own);
  self->set_count_only(true);
  return txn;
}

// The transaction that puts the hold's key if its lease has none, and
// reads the key otherwise.
etcdserverpb::TxnRequest enter_request(const std::string& key, const ClusterLockRequest& request,
                                       std::int64_t lease) {
  etcdserverpb::TxnRequest txn;
  Compare* absent = txn.add_compare();
  absent->set_key(key);
  absent->set_target(Compare::CREATE);
  absent->set_result(Compare::EQUAL);
  absent->set_create_revision(0);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  if (request.record) put->set_value(record_value(*request.record, request.contend.mode, lease));
  put->set_lease(lease);
  // The first look, in the same round trip: the keys newest first, the put
  // one among them (a range after a put in a transaction sees it). An
  // exclusive request needs their names only.
  RangeRequest* line = txn.add_success()->mutable_request_range();
  const std::string prefix = key_prefix(request.name);
  line->set_key(prefix);
  line->set_range_end(prefix_end(prefix));
  line->set_sort_target(RangeRequest::CREATE);
  line->set_sort_order(RangeRequest::DESCEND);
  if (request.contend.mode == Mode::exclusive && !request.contend.steal) line->set_keys_only(true);
  txn.add_failure()->mutable_request_range()->set_key(key);
  return txn;
}

// Where a wait watches the key before it from: the revision after the one
// whose look saw the key. etcd serves a watch that starts in the future at
// once, while one that starts in the past waits for its catch-up loop
// (every 100 ms).
std::int64_t watch_start(std::int64_t seen_at) { return seen_at + 1; }

// A wait for the deletion of one key, which the watch's end, the
// request's cancellation or its deadline ends.
class DeletionWait final : public Cancellation::Listener {
 public:
  using Start = std::function<std::shared_ptr<KeyDeletion>(std::function<void(std::error_code)>)>;

  // Runs the watch `start` makes. No error when the deletion came (or may
  // have: look again); errc::cancelled or errc::timeout when the wait was
  // ended first.
  std::error_code run(const Start& start, const ContendRequest& request) {
    if (request.cancel && !request.cancel->subscribe(*this)) return errc::cancelled;
    const std::error_code ec = watch(start, request.deadline);
    if (request.cancel) request.cancel->unsubscribe(*this);
    return ec;
  }

 private:
  std::error_code watch(const Start& start, const Deadline& deadline) {
    const auto watch = start([this](std::error_code ec) {
      std::lock_guard lock(mutex_);
      result_ = ec;
      changed_.notify_one();
    });
    std::unique_lock lock(mutex_);
    const auto over = [this] { return result_.has_value() || cancelled_; };
    if (!deadline) {
      changed_.wait(lock, over);
    } else {
      changed_.wait_until(lock, *deadline, over);
    }
    if (result_) return *result_;
    lock.unlock();
    watch->cancel();
    lock.lock();
    // The callback refers to this object: it must have run before we leave.
    changed_.wait(lock, [this] { return result_.has_value(); });
    return cancelled_ ? errc::cancelled : errc::timeout;
  }

  void cancelled() noexcept override {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    changed_.notify_one();
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<std::error_code> result_;
  bool cancelled_ = false;
};

// After how many failed watches in a row (a member restarting, say) a wait
// gives up with the last one's error, rather than looking again.
constexpr int kWatchFailuresTolerated = 3;

}  // namespace

// The round trips of a contention and their answers, kept while one is
// under way; `mutex` guards what a gRPC thread writes.
// What a wait that watches every key of the name has seen of the line
// ahead of its key. Written on the gRPC thread that reads the watch, read
// by the contention once the watch has ended.
struct ClusterHold::Contention::LineAhead {
  std::vector<std::string> excluding;  // the keys ahead that exclude it, left
  std::string own;
  bool own_gone = false;
  std::int64_t cleared_at = 0;  // the revision at which the last went, with `own` there
};

struct ClusterHold::Contention::Exchange {
  etcdserverpb::LeaseGrantRequest grant;
  etcdserverpb::LeaseGrantResponse granted;
  etcdserverpb::TxnRequest enter;
  etcdserverpb::TxnResponse entered;
  etcdserverpb::TxnRequest look;
  etcdserverpb::TxnResponse looked;
  etcdserverpb::TxnRequest steal;
  etcdserverpb::TxnResponse stolen;
  std::unique_ptr<grpc::ClientContext> context;

  std::mutex mutex;
  std::optional<Call> answered;  // the call whose answer is in
  grpc::Status status;
  std::shared_ptr<KeyDeletion> deletion;  // the wait under way
  LineAhead line;                         // what it saw, when it watches the name
  std::optional<std::error_code> watch_end;
  bool interrupted = false;  // interrupt() came during this wait
};

ClusterHold::Contention::Contention(ClusterHold& hold, const ClusterLockRequest& request) noexcept
    : Contention(hold, request, nullptr) {}

ClusterHold::Contention::Contention(ClusterHold& hold, const ClusterLockRequest& request,
                                    std::function<void()> resume) noexcept
    : hold_(hold),
      request_(request),
      resume_(std::move(resume)),
      exchange_(std::make_unique<Exchange>()) {}

ClusterHold::Contention::~Contention() {
  std::lock_guard lock(exchange_->mutex);
  if (exchange_->deletion) exchange_->deletion->cancel();
}

Step ClusterHold::Contention::attempt(std::error_code& ec) noexcept try {
  if (Step step = take_watch_end(ec); step != Step::again) return step;
  // The answer to a steal sent by the last step (asynchronously).
  if (is_answered(Call::steal)) {
    if (Step step = exchange(Call::steal, ec); step != Step::again) return step;
  }
  if (hold_.lease_ == 0 && (grant_asked_ || !take_spare_lease())) {
    grant_asked_ = true;  // its answer brings the lease: no spare then
    if (Step step = exchange(Call::grant, ec); step != Step::again) return step;
  }
  for (;;) {
    looked_ = take_cleared_line();
    if (!entered_) {
      if (Step step = exchange(Call::enter, ec); step != Step::again) return step;
    }
    if (!looked_) {
      if (Step step = exchange(Call::look, ec); step != Step::again) return step;
    }
    if (entered_) return before_ ? Step::busy : Step::locked;
    // The look found the key gone: put it again.
  }
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return Step::failed;
}

Step ClusterHold::Contention::exchange(Call call, std::error_code& ec) {
  Exchange& x = *exchange_;
  {
    std::lock_guard lock(x.mutex);
    if (x.answered == call) {
      x.answered.reset();
      ec = error_of(call, x.status);
      if (!ec) ec = apply(call);
      return ec ? Step::failed : Step::again;
    }
  }
  const EtcdClient& client = *hold_.client_;
  switch (call) {
    case Call::grant: x.grant.set_ttl(std::max<std::int64_t>(1, request_.ttl.count())); break;
    case Call::enter:
      hold_.key_ = key_prefix(request_.name) + lease_hex(hold_.lease_);
      x.enter = enter_request(hold_.key_, request_, hold_.lease_);
      break;
    case Call::look:
      x.look = look_request(key_prefix(request_.name), hold_.key_, hold_.revision_,
                            request_.contend.mode, request_.contend.steal);
      break;
    case Call::steal: x.steal = steal_request(); break;
  }
  x.context = client.context();
  if (!resume_) {
    switch (call) {
      case Call::grant: x.status = client.lease().LeaseGrant(x.context.get(), x.grant, &x.granted); break;
      case Call::enter: x.status = client.kv().Txn(x.context.get(), x.enter, &x.entered); break;
      case Call::look: x.status = client.kv().Txn(x.context.get(), x.look, &x.looked); break;
      case Call::steal: x.status = client.kv().Txn(x.context.get(), x.steal, &x.stolen); break;
    }
    ec = error_of(call, x.status);
    if (!ec) ec = apply(call);
    return ec ? Step::failed : Step::again;
  }
  auto answered = [this, call](grpc::Status status) {
    {
      std::lock_guard lock(exchange_->mutex);
      exchange_->status = std::move(status);
      exchange_->answered = call;
    }
    resume_();
  };
  switch (call) {
    case Call::grant: client.lease().async()->LeaseGrant(x.context.get(), &x.grant, &x.granted, answered); break;
    case Call::enter: client.kv().async()->Txn(x.context.get(), &x.enter, &x.entered, answered); break;
    case Call::look: client.kv().async()->Txn(x.context.get(), &x.look, &x.looked, answered); break;
    case Call::steal: client.kv().async()->Txn(x.context.get(), &x.steal, &x.stolen, answered); break;
  }
  return Step::pending;
}

bool ClusterHold::Contention::is_answered(Call call) {
  std::lock_guard lock(exchange_->mutex);
  return exchange_->answered == call;
}

// A lease granted ahead saves the grant's round trip.
bool ClusterHold::Contention::take_spare_lease() {
  const auto spare = hold_.client_->spare_leases().take(request_.ttl);
  if (!spare) return false;
  hold_.lease_ = spare->id;
  hold_.ttl_ = spare->ttl;
  hold_.granted_at_ = spare->granted_at;
  hold_.keep_alive(request_);
  // Renewed now, without waiting for the answer: it may be half used.
  hold_.client_->lease_keeper().renew(spare->id);
  return true;
}

// The keys of a look, newest first: those of this name created before the
// hold's own (a look made with the put sees it and later keys too) are
// the line ahead of it. etcd's own recipe also waits for the keys of
// longer names under the same prefix; packlock does not, so that the
// locks of nested packs (run's default name is the canonical path) are
// independent, as their sidecars are.
void ClusterHold::Contention::take_look(const etcdserverpb::RangeResponse& keys,
                                        std::int64_t revision) {
  hold_.seen_at_ = revision;
  before_.reset();
  ahead_.clear();
  excluding_.clear();
  const std::size_t prefix_size = key_prefix(request_.name).size();
  for (const auto& kv : keys.kvs()) {
    if (kv.create_revision() >= hold_.revision_) continue;
    // Another lock's: a longer name under this one ("<name>/b/<lease>").
    if (kv.key().find('/', prefix_size) != std::string::npos) continue;
    if (request_.contend.steal) {
      ahead_.push_back({kv.key(), kv.create_revision(), parse_owner_record(kv.value()).has_value()});
    }
    if (request_.contend.mode == Mode::exclusive || !is_shared_value(kv.value())) {
      if (!before_) before_ = Predecessor{kv.key(), revision};
      excluding_.push_back(kv.key());
    }
  }
}

// A key put again with a lease that is gone: the hold was lost during the
// wait.
std::error_code ClusterHold::Contention::error_of(Call call, const grpc::Status& status) {
  if (call == Call::enter && status.error_code() == grpc::StatusCode::NOT_FOUND) return errc::hijacked;
  return detail::error_of(status);
}

etcdserverpb::TxnRequest ClusterHold::Contention::steal_request() const {
  etcdserverpb::TxnRequest txn;
  for (const Ahead& key : ahead_) {
    Compare* same = txn.add_compare();
    same->set_key(key.key);
    same->set_target(Compare::CREATE);
    same->set_result(Compare::EQUAL);
    same->set_create_revision(key.created);
    txn.add_success()->mutable_request_delete_range()->set_key(key.key);
  }
  return txn;
}

// Takes in the answer of `call`.
std::error_code ClusterHold::Contention::apply(Call call) {
  Exchange& x = *exchange_;
  switch (call) {
    case Call::grant:
      if (!x.granted.error().empty() || x.granted.id() == 0) return errc::cluster_failed;
      hold_.lease_ = x.granted.id();
      hold_.ttl_ = std::chrono::seconds(x.granted.ttl());
      hold_.granted_at_ = std::chrono::steady_clock::now();
      // Renewed while it waits too: a wait may outlast the TTL.
      hold_.keep_alive(request_);
      return {};
    case Call::enter:
      entered_ = true;
      if (x.entered.succeeded()) {
        hold_.revision_ = x.entered.header().revision();
        if (x.entered.responses_size() != 2) return errc::cluster_failed;
        take_look(x.entered.responses(1).response_range(), x.entered.header().revision());
        looked_ = true;
        return {};
      }
      {
        // The lease had put its key before: a look of its own follows.
        const auto& existing = x.entered.responses(0).response_range();
        if (existing.kvs_size() == 0) return errc::cluster_failed;
        hold_.revision_ = existing.kvs(0).create_revision();
      }
      return {};
    case Call::look:
      if (x.looked.responses_size() != 2) return errc::cluster_failed;
      // The key went while we waited: with the lease (then putting it
      // again fails: lost), or to a steal (then it queues again, behind).
      if (x.looked.responses(1).response_range().count() != 1) {
        entered_ = false;
        return {};
      }
      take_look(x.looked.responses(0).response_range(), x.looked.header().revision());
      looked_ = true;
      return {};
    case Call::steal:
      // Keys that changed meanwhile leave the steal undone: look again.
      ++steals_;
      return {};
  }
  return errc::cluster_failed;
}

Step ClusterHold::Contention::after_busy(std::error_code& ec) noexcept try {
  if (!request_.contend.steal) return Step::busy;
  // Others may queue or steal between our look and our steal: a few
  // rounds, then the lock is left to them.
  if (steals_ >= kStealRounds) return Step::busy;
  // A key that is not packlock's (etcdctl's) would not notice it was
  // robbed: its holder would go on as if it held the lock.
  for (const Ahead& key : ahead_) {
    if (!key.told) return Step::busy;
  }
  return exchange(Call::steal, ec);
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return Step::failed;
}

Step ClusterHold::Contention::wait(std::error_code& ec) noexcept try {
  waited_ = true;
  if (resume_) return start_watch(ec);
  ec = DeletionWait().run([this](auto on_end) { return watch_ahead(std::move(on_end)); },
                          request_.contend);
  {
    std::lock_guard lock(exchange_->mutex);
    exchange_->watch_end = ec;
  }
  return take_watch_end(ec);
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return Step::failed;
}

// The asynchronous wait: a watch whose end resumes the contention.
Step ClusterHold::Contention::start_watch(std::error_code&) {
  std::lock_guard lock(exchange_->mutex);
  exchange_->interrupted = false;
  exchange_->deletion = watch_ahead([this](std::error_code end) {
    {
      std::lock_guard lock(exchange_->mutex);
      exchange_->watch_end = end;
    }
    resume_();
  });
  // Cancelled, or past the deadline, before the watch was there to end.
  if (wait_is_over(request_.contend)) exchange_->deletion->cancel();
  return Step::pending;
}

// The key before this one, or, when it is the only key ahead that
// excludes this one, every key of the name. The wait then ends when that
// key goes or this one does, and the events of one revision come in one
// answer: a steal that deletes both, or this key's lease expiring first,
// is seen, and only a deletion of the one key ahead with this key still
// there clears the line. That spares the look after the wait. The name's
// other deletions reach the waiters first in line only: one writer, or the
// readers behind one writer.
std::shared_ptr<KeyDeletion> ClusterHold::Contention::watch_ahead(
    std::function<void(std::error_code)> on_end) {
  const std::int64_t from = watch_start(before_->revision);
  if (excluding_.size() != 1) {
    return KeyDeletion::watch(*hold_.client_, before_->key, from, std::move(on_end));
  }
  exchange_->line = LineAhead{excluding_, hold_.key_};
  const std::string prefix = key_prefix(request_.name);
  auto ends = [this](const std::string& key, std::int64_t revision) {
    std::lock_guard lock(exchange_->mutex);
    LineAhead& line = exchange_->line;
    if (key == line.own) line.own_gone = true;
    std::erase(line.excluding, key);
    if (line.excluding.empty() && !line.own_gone && line.cleared_at == 0) line.cleared_at = revision;
    return line.own_gone || line.excluding.empty();
  };
  return KeyDeletion::watch_range(*hold_.client_, prefix, prefix_end(prefix), std::move(ends), from,
                                  std::move(on_end));
}

bool ClusterHold::Contention::take_cleared_line() {
  std::lock_guard lock(exchange_->mutex);
  LineAhead line = std::exchange(exchange_->line, LineAhead{});
  if (line.cleared_at == 0 || line.own_gone) return false;
  // As a look at that revision would have found it: first in line.
  hold_.seen_at_ = line.cleared_at;
  before_.reset();
  excluding_.clear();
  return true;
}

void ClusterHold::Contention::interrupt() noexcept {
  std::lock_guard lock(exchange_->mutex);
  exchange_->interrupted = true;
  if (exchange_->deletion) exchange_->deletion->cancel();
}

// How the last wait ended: the key went (look again), the wait is over
// (look again: the loop then stops it), or the watch failed (look again, a
// few times in a row, since the key may have gone meanwhile).
Step ClusterHold::Contention::take_watch_end(std::error_code& ec) {
  std::lock_guard lock(exchange_->mutex);
  if (!exchange_->watch_end) return Step::again;
  const std::error_code end = *std::exchange(exchange_->watch_end, std::nullopt);
  exchange_->deletion.reset();
  const bool stopped = end == errc::timeout || end == errc::cancelled || exchange_->interrupted;
  if (!end || stopped) {
    failed_watches_ = 0;
    return Step::again;
  }
  if (++failed_watches_ >= kWatchFailuresTolerated) {
    ec = end;
    return Step::failed;
  }
  return Step::again;
}

std::string key_prefix(const std::string& name) { return name + "/"; }

std::string lease_hex(std::int64_t lease) {
  char text[24];
  std::snprintf(text, sizeof text, "%llx", static_cast<unsigned long long>(lease));
  return text;
}

std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) < 0xff) {
      ++prefix.back();
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

bool is_shared_value(const std::string& value) {
  const std::optional<OwnerRecord> record = parse_owner_record(value);
  return record && record->mode == Mode::shared;
}

std::unique_ptr<ClusterHold> ClusterHold::acquire(std::shared_ptr<const EtcdClient> client,
                                                  const ClusterLockRequest& request,
                                                  std::error_code& ec) {
  std::unique_ptr<ClusterHold> hold(new ClusterHold(std::move(client)));
  ec.clear();
  Contention contention(*hold, request);
  if (contend_on(contention, request.contend, ec) != Step::locked) {
    return nullptr;  // the destructor revokes the lease
  }
  if ((ec = hold->take_over(contention, request))) return nullptr;
  return hold;
}

std::unique_ptr<ClusterHold> ClusterHold::create(std::shared_ptr<const EtcdClient> client) {
  return std::unique_ptr<ClusterHold>(new ClusterHold(std::move(client)));
}

std::error_code ClusterHold::take_over(const Contention& contention, const ClusterLockRequest& request) {
  // A beat during the wait may have found the lease gone.
  if (lost()) return errc::hijacked;
  locked_ = true;
  std::optional<Restamp> restamp;
  if (contention.waited() && request.record) {
    restamp = Restamp{*request.record, request.contend.mode, std::chrono::system_clock::now()};
  }
  watch_key(std::move(restamp));
  return {};
}

// What the watches of the hold's key reach, for as long as the hold lets
// them; `mutex` guards it.
struct ClusterHold::KeyWatch {
  std::mutex mutex;
  ClusterHold* hold = nullptr;
  std::shared_ptr<KeyDeletion> deletion;  // the last watch started
  std::uint64_t started = 0;              // watches started
  std::uint64_t kept = 0;                 // the one `deletion` is
};

void ClusterHold::keep_alive(const ClusterLockRequest& request) {
  asked_ttl_ = request.ttl;
  heartbeat_ = HeartbeatService::shared();
  if (!heartbeat_->add(*this, request.heartbeat)) heartbeat_.reset();
}

// The watch of the key just locked, and the record's time (restamp), are
// left to the heartbeat thread, which the caller does not wait for: a
// stream's start costs a few hundred microseconds of a handoff. The watch
// starts from the last look, which saw the key, so it misses no deletion
// (and a watch from the key's creation could start before etcd's
// compacted history after a long wait).
void ClusterHold::watch_key(std::optional<Restamp> restamp) {
  key_watch_ = std::make_shared<KeyWatch>();
  key_watch_->hold = this;
  {
    std::lock_guard lock(restamp_mutex_);
    restamp_ = std::move(restamp);
  }
  if (!heartbeat_) {
    watch_key_from(seen_at_ + 1);
    send_restamp();
    return;
  }
  watch_again_from_ = seen_at_ + 1;
  heartbeat_->beat_soon(*this);
}

// A deleted key is a lost lock, and a watch that ended otherwise is made
// again: the heartbeat thread sees to either at once.
void ClusterHold::watch_key_from(std::int64_t revision) {
  const std::shared_ptr<KeyWatch> watch = key_watch_;
  std::uint64_t sequence = 0;
  {
    std::lock_guard lock(watch->mutex);
    sequence = ++watch->started;
  }
  // Not under the mutex, which the watch's callback takes.
  auto deletion = KeyDeletion::watch(*client_, key_, revision, [watch](std::error_code ec) {
    std::lock_guard lock(watch->mutex);
    if (!watch->hold || ec == errc::cancelled) return;
    (ec ? watch->hold->key_unwatched_ : watch->hold->key_deleted_) = true;
    if (watch->hold->heartbeat_) watch->hold->heartbeat_->beat_soon(*watch->hold);
  });
  std::lock_guard lock(watch->mutex);
  if (!watch->hold) return deletion->cancel();
  if (sequence > watch->kept) {
    watch->kept = sequence;
    watch->deletion = std::move(deletion);
  }
}

// The watch of the key ended without seeing it deleted (the member it
// spoke to went away, etcd compacted its history): the key is looked at,
// without blocking the heartbeat thread (which beats every hold, packs'
// too), and the answer is taken in by a later beat: the key is watched
// again from that look, or found gone (lost). A look that fails is made
// again at the next beat.
void ClusterHold::look_at_key() {
  etcdserverpb::RangeRequest range;
  range.set_key(key_);
  call_async(*client_, client_->kv().async(), &etcdserverpb::KV::Stub::async::Range, std::move(range),
             std::function<void(const grpc::Status&, const etcdserverpb::RangeResponse&)>(
                 [watch = key_watch_, revision = revision_](const grpc::Status& status,
                                                            const etcdserverpb::RangeResponse& found) {
                   std::lock_guard lock(watch->mutex);
                   ClusterHold* hold = watch->hold;
                   if (!hold) return;
                   if (!status.ok()) {
                     hold->key_unwatched_ = true;
                     return;
                   }
                   if (found.kvs_size() == 0 || found.kvs(0).create_revision() != revision) {
                     hold->key_deleted_ = true;
                   } else {
                     hold->watch_again_from_ = found.header().revision() + 1;
                   }
                   if (hold->heartbeat_) hold->heartbeat_->beat_soon(*hold);
                 }));
}

bool ClusterHold::beat(std::function<void()>& then) noexcept {
  if (lost()) return false;
  try {
    client_->keep_token_fresh();
  } catch (const std::bad_alloc&) {
    // The next beat asks again.
  }
  if (releasing_.load(std::memory_order_acquire)) {
    // The owner deletes the key: the lease is kept for the next hold, and
    // the lock is neither lost nor watched any more.
    try {
      client_->lease_keeper().renew(lease_);
    } catch (...) {
    }
    return true;
  }
  try {
    if (key_unwatched_.exchange(false)) look_at_key();
    if (const std::int64_t from = watch_again_from_.exchange(0)) watch_key_from(from);
  } catch (const std::bad_alloc&) {
    key_unwatched_ = true;  // the next beat tries again
  }
  try {
    send_restamp();
  } catch (const std::bad_alloc&) {
    // The record keeps the time its wait began.
  }
  const auto answer = client_->lease_keeper().last_answer(lease_);
  const auto last_renewed = answer ? answer->at : granted_at_;
  const bool gone = (answer && answer->ttl <= 0) || key_deleted_ ||
                    std::chrono::steady_clock::now() - last_renewed > ttl_;
  if (!gone) {
    try {
      client_->lease_keeper().renew(lease_);
    } catch (...) {
      // No memory for the request: the next beat asks again.
    }
    return true;
  }
  std::lock_guard lock(callback_mutex_);
  lost_.store(true, std::memory_order_release);
  // Run by the heartbeat thread after the beat: it may release this hold.
  then = std::move(on_lost_);
  on_lost_ = nullptr;
  return false;
}

// The key's record says when its wait began; once granted after a wait it
// says when the lock was acquired, as a sidecar's record does. Not waited
// for: the grant does not wait on a round trip, and a failure leaves only
// an older time. Only while the key is this hold's (the same create
// revision), so a late write cannot bring a released key back.
void ClusterHold::send_restamp() {
  std::optional<Restamp> restamp;
  {
    std::lock_guard lock(restamp_mutex_);
    restamp = std::exchange(restamp_, std::nullopt);
  }
  if (!restamp) return;
  etcdserverpb::TxnRequest txn;
  Compare* same = txn.add_compare();
  same->set_key(key_);
  same->set_target(Compare::CREATE);
  same->set_result(Compare::EQUAL);
  same->set_create_revision(revision_);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(record_value(std::move(restamp->record), restamp->mode, lease_, restamp->at));
  put->set_lease(lease_);
  send_txn(*client_, std::move(txn));
}

void ClusterHold::on_lost(std::function<void()> callback) {
  std::unique_lock lock(callback_mutex_);
  if (!lost()) {
    on_lost_ = std::move(callback);
    return;
  }
  lock.unlock();
  if (callback) callback();
}

// Stops the hold's keeping when it goes out of scope, however it does.
struct ClusterHold::StopKeepingAlive {
  ClusterHold& hold;
  ~StopKeepingAlive() { hold.stop_keeping_alive(); }
};

// From now on the key's watches, and the looks at it, report nothing.
void ClusterHold::forget_key_watch() noexcept {
  if (!key_watch_) return;
  std::lock_guard lock(key_watch_->mutex);
  key_watch_->hold = nullptr;
}

void ClusterHold::stop_keeping_alive() noexcept {
  // First the beats, which may start watches (a beat under way ends first).
  if (heartbeat_) heartbeat_->remove(*this);
  if (key_watch_) {
    std::shared_ptr<KeyDeletion> deletion;
    {
      std::lock_guard lock(key_watch_->mutex);
      key_watch_->hold = nullptr;
      deletion = std::move(key_watch_->deletion);
    }
    if (deletion) deletion->cancel();
  }
  client_->lease_keeper().forget(lease_);
}

std::error_code ClusterHold::release() noexcept try {
  if (released_) return {};
  released_ = true;
  // A forked child's copy is the parent's hold: the key stays, as a
  // pack's lock does.
  if (generation_ != fork_generation()) return {};
  const auto answer = client_->lease_keeper().last_answer(lease_);
  const auto last_renewed = answer ? answer->at : granted_at_;
  const bool held = lease_ != 0 && locked_ && !lost();
  if (!held) stop_keeping_alive();
  if (lease_ == 0) return {};  // never granted: nothing to let go
  if (held) {
    // The key goes, which releases the lock; the lease, renewed until now
    // and without a key again, serves the client's next hold. The beats
    // and the key's watch are told first that the deletion is this hold's
    // own (they judge no loss from here on); the rest of the hold's
    // keeping stops after, when the lock is free.
    releasing_.store(true, std::memory_order_release);
    forget_key_watch();
    etcdserverpb::DeleteRangeRequest remove;
    etcdserverpb::DeleteRangeResponse removed;
    std::error_code ec;
    {
      const StopKeepingAlive stop{*this};  // also when the call throws
      remove.set_key(key_);
      ec = call(*client_, client_->kv(), &etcdserverpb::KV::Stub::DeleteRange, remove, removed);
    }
    if (ec) return ec;  // unanswered: the key goes with the lease, at its TTL
    if (removed.deleted() == 1) {
      client_->spare_leases().give_back(asked_ttl_, {lease_, ttl_, last_renewed});
      return {};
    }
    // Gone already, unseen: lost. The lease goes below.
    lost_.store(true, std::memory_order_release);
  }
  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(lease_);
  etcdserverpb::LeaseRevokeResponse revoked;
  const auto context = client_->context();
  const grpc::Status status = client_->lease().LeaseRevoke(context.get(), revoke, &revoked);
  // A lease that is gone took the key with it: the lock was lost.
  if (status.error_code() == grpc::StatusCode::NOT_FOUND || lost()) return errc::hijacked;
  return error_of(status);
} catch (const std::bad_alloc&) {
  return std::make_error_code(std::errc::not_enough_memory);
}

void ClusterHold::release_async(std::function<void(std::error_code)> done) {
  if (generation_ != fork_generation()) {  // as in release()
    released_ = true;
    return done({});
  }
  if (released_ || lease_ == 0) {
    released_ = true;
    stop_keeping_alive();
    return done({});
  }
  released_ = true;
  stop_keeping_alive();
  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(lease_);
  const bool was_lost = lost();
  call_async(*client_, client_->lease().async(), &etcdserverpb::Lease::Stub::async::LeaseRevoke,
             std::move(revoke),
             std::function<void(const grpc::Status&, const etcdserverpb::LeaseRevokeResponse&)>(
                 [done = std::move(done), was_lost](const grpc::Status& status,
                                                    const etcdserverpb::LeaseRevokeResponse&) {
                   // A lease that is gone took the key with it: the lock was lost.
                   const bool gone = status.error_code() == grpc::StatusCode::NOT_FOUND || was_lost;
                   done(gone ? make_error_code(errc::hijacked) : error_of(status));
                 }));
}

ClusterHold::~ClusterHold() { (void)release(); }

}  // namespace packlock::detail
