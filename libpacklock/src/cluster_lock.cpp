#include "cluster_lock.hpp"

#include <condition_variable>
#include <cstdio>
#include <mutex>

#include <packlock/error.hpp>

namespace packlock::detail {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;

// The record's line for the key's value: without the padding a sidecar
// needs, with the lease id as its token.
std::string record_value(OwnerRecord record, Mode mode, std::int64_t lease) {
  char token[33];
  std::snprintf(token, sizeof token, "%032llx", static_cast<unsigned long long>(lease));
  record.mode = mode;
  record.token = token;
  record.acquired_at = std::chrono::system_clock::now();
  std::string line = format_owner_record(record);
  line.erase(line.find('\n') + 1);
  return line;
}

struct Predecessor {
  std::string key;
  std::int64_t revision = 0;  // of the answer that saw it
};

// What one look at the keys of a lock finds.
struct Look {
  std::optional<Predecessor> before;  // the key to wait for, if any
  bool mine = false;                  // the hold's own key still exists
  std::int64_t revision = 0;          // of the answer
};

// The last key created before `revision` under `prefix` that excludes a
// holder in `mode`, and whether `own` is still there (its lease may have
// expired during a wait): two reads in one transaction, one round trip.
Look look(const EtcdClient& client, const std::string& prefix, const std::string& own,
          std::int64_t revision, Mode mode, std::error_code& ec) {
  etcdserverpb::TxnRequest txn;
  RangeRequest* before = txn.add_success()->mutable_request_range();
  before->set_key(prefix);
  before->set_range_end(prefix_end(prefix));
  before->set_max_create_revision(revision - 1);
  before->set_sort_target(RangeRequest::CREATE);
  before->set_sort_order(RangeRequest::DESCEND);
  if (mode == Mode::exclusive) {
    before->set_limit(1);
    before->set_keys_only(true);
  }
  RangeRequest* self = txn.add_success()->mutable_request_range();
  self->set_key(own);
  self->set_count_only(true);
  etcdserverpb::TxnResponse response;
  ec = call(client, client.kv(), &etcdserverpb::KV::Stub::Txn, txn, response);
  Look found;
  if (ec) return found;
  if (response.responses_size() != 2) {
    ec = errc::cluster_failed;
    return found;
  }
  found.mine = response.responses(1).response_range().count() == 1;
  found.revision = response.header().revision();
  for (const auto& kv : response.responses(0).response_range().kvs()) {
    if (mode == Mode::exclusive || !is_shared_value(kv.value())) {
      found.before = Predecessor{kv.key(), response.header().revision()};
      break;
    }
  }
  return found;
}

// A wait for the deletion of one key, which the watch's end, the
// request's cancellation or its deadline ends.
class DeletionWait final : public Cancellation::Listener {
 public:
  // No error when the key was deleted (or may have been: look again);
  // errc::cancelled or errc::timeout when the wait was ended first.
  std::error_code run(const EtcdClient& client, const Predecessor& key,
                      const ContendRequest& request) {
    if (request.cancel && !request.cancel->subscribe(*this)) return errc::cancelled;
    const std::error_code ec = watch(client, key, request.deadline);
    if (request.cancel) request.cancel->unsubscribe(*this);
    return ec;
  }

 private:
  std::error_code watch(const EtcdClient& client, const Predecessor& key,
                        const Deadline& deadline) {
    // From the revision after the one that saw the key: etcd serves a
    // watch that starts in the future at once, while one that starts in
    // the past waits for its catch-up loop (every 100 ms).
    const auto watch = KeyDeletion::watch(client, key.key, key.revision + 1, [this](std::error_code ec) {
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

}  // namespace

// One contention for a cluster lock, driven by contend_on(): the attempt
// puts the hold's key (once) and looks for the key it must wait for; the
// wait watches that key's deletion. Staleness is etcd's: a key goes with
// its lease.
class ClusterHold::Contention final {
 public:
  Contention(ClusterHold& hold, const ClusterLockRequest& request) noexcept
      : hold_(hold), request_(request) {}

  Step attempt(std::error_code& ec) noexcept try {
    if (!entered_) {
      if ((ec = hold_.enter(request_))) return Step::failed;
      entered_ = true;
    }
    const Look found = look(*hold_.client_, key_prefix(request_.name), hold_.key_,
                            hold_.revision_, request_.contend.mode, ec);
    if (ec) return Step::failed;
    // The lease may have expired, and the key with it, while we waited.
    if (!found.mine) {
      ec = errc::hijacked;
      return Step::failed;
    }
    before_ = found.before;
    hold_.seen_at_ = found.revision;
    return before_ ? Step::busy : Step::locked;
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return Step::failed;
  }

  Step after_busy(std::error_code&) noexcept { return Step::busy; }

  // Whether the lock was waited for (so its key was put well before).
  bool waited() const noexcept { return waited_; }

  Step wait(std::error_code& ec) noexcept try {
    waited_ = true;
    ec = DeletionWait().run(*hold_.client_, *before_, request_.contend);
    // A wait that is over is stopped by the loop, after one more look.
    if (ec == errc::timeout || ec == errc::cancelled) ec.clear();
    return ec ? Step::failed : Step::again;
  } catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return Step::failed;
  }

  // The hold's destructor revokes the lease, and the key with it.
  void give_up() noexcept {}

 private:
  ClusterHold& hold_;
  const ClusterLockRequest& request_;
  bool entered_ = false;
  bool waited_ = false;
  std::optional<Predecessor> before_;
};

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
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(std::max<std::int64_t>(1, request.ttl.count()));
  etcdserverpb::LeaseGrantResponse granted;
  ec = call(*client, client->lease(), &etcdserverpb::Lease::Stub::LeaseGrant, grant, granted);
  if (!ec && !granted.error().empty()) ec = errc::cluster_failed;
  if (ec) return nullptr;
  std::unique_ptr<ClusterHold> hold(
      new ClusterHold(std::move(client), granted.id(), std::chrono::seconds(granted.ttl())));
  // Renewed while it waits too: a wait may outlast the TTL.
  hold->keep_alive(request);
  ec.clear();
  Contention contention(*hold, request);
  if (contend_on(contention, request.contend, ec) != Step::locked) {
    return nullptr;  // the destructor revokes the lease
  }
  // A beat during the wait may have found the lease gone.
  if (hold->lost()) {
    ec = errc::hijacked;
    return nullptr;
  }
  hold->watch_key();
  if (contention.waited()) hold->restamp(request);
  return hold;
}

// What the watch of the hold's key reaches, for as long as the hold lets it.
struct ClusterHold::KeyWatch {
  std::mutex mutex;
  ClusterHold* hold = nullptr;
};

void ClusterHold::keep_alive(const ClusterLockRequest& request) {
  heartbeat_ = HeartbeatService::shared();
  if (!heartbeat_->add(*this, request.heartbeat)) heartbeat_.reset();
}

// A deleted key is a lost lock; the heartbeat thread says so at once.
void ClusterHold::watch_key() {
  key_watch_ = std::make_shared<KeyWatch>();
  key_watch_->hold = this;
  // From the last look, which saw the key: a watch from its creation could
  // start before etcd's compacted history after a long wait.
  key_deletion_ = KeyDeletion::watch(*client_, key_, seen_at_ + 1,
                                     [watch = key_watch_](std::error_code ec) {
                                       std::lock_guard lock(watch->mutex);
                                       if (ec || !watch->hold) return;
                                       watch->hold->key_deleted_ = true;
                                       if (watch->hold->heartbeat_) {
                                         watch->hold->heartbeat_->beat_soon(*watch->hold);
                                       }
                                     });
}

bool ClusterHold::beat(std::function<void()>& then) noexcept {
  if (lost()) return false;
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
void ClusterHold::restamp(const ClusterLockRequest& request) {
  if (!request.record) return;
  etcdserverpb::TxnRequest txn;
  Compare* same = txn.add_compare();
  same->set_key(key_);
  same->set_target(Compare::CREATE);
  same->set_result(Compare::EQUAL);
  same->set_create_revision(revision_);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(record_value(*request.record, request.contend.mode, lease_));
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

void ClusterHold::stop_keeping_alive() noexcept {
  if (key_watch_) {
    std::lock_guard lock(key_watch_->mutex);
    key_watch_->hold = nullptr;
  }
  if (key_deletion_) key_deletion_->cancel();
  if (heartbeat_) heartbeat_->remove(*this);
  client_->lease_keeper().forget(lease_);
}

// Puts the key (if the lease had none) and learns its create revision.
std::error_code ClusterHold::enter(const ClusterLockRequest& request) {
  key_ = key_prefix(request.name) + lease_hex(lease_);
  etcdserverpb::TxnRequest txn;
  Compare* absent = txn.add_compare();
  absent->set_key(key_);
  absent->set_target(Compare::CREATE);
  absent->set_result(Compare::EQUAL);
  absent->set_create_revision(0);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key_);
  if (request.record) put->set_value(record_value(*request.record, request.contend.mode, lease_));
  put->set_lease(lease_);
  txn.add_failure()->mutable_request_range()->set_key(key_);
  etcdserverpb::TxnResponse response;
  if (const auto ec = call(*client_, client_->kv(), &etcdserverpb::KV::Stub::Txn, txn, response)) {
    return ec;
  }
  if (response.succeeded()) {
    revision_ = response.header().revision();
    return {};
  }
  const auto& existing = response.responses(0).response_range();
  if (existing.kvs_size() == 0) return errc::cluster_failed;
  revision_ = existing.kvs(0).create_revision();
  return {};
}

std::error_code ClusterHold::release() noexcept try {
  if (released_) return {};
  released_ = true;
  stop_keeping_alive();
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

ClusterHold::~ClusterHold() { (void)release(); }

}  // namespace packlock::detail
