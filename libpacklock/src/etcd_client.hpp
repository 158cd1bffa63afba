#pragma once
// The etcd v3 client: one gRPC channel to the endpoints of a cluster, with
// its credentials (TLS files as etcdctl names them, a user and password),
// and what its answers mean as packlock error codes. The lock recipe
// (cluster_lock.hpp) speaks the API through the stubs below.
//
// Completions of asynchronous calls run on gRPC's own threads (its callback
// API): no thread is made per request. Callers hand them on to their
// executor.
//
// Thread-safety: an EtcdClient is used by any number of threads at once.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h>
#include <grpcpp/grpcpp.h>

namespace packlock::detail {

struct EtcdSettings {
  // "host:port", "http://host:port" or "https://host:port".
  std::vector<std::string> endpoints;
  // PEM files: the CA that signed the servers' certificates, and the
  // client's certificate and key. Any of them, or an https endpoint,
  // means TLS.
  std::string cacert;
  std::string cert;
  std::string key;
  // Credentials of etcd's authentication, when the user is not empty.
  std::string user;
  std::string password;
  std::chrono::milliseconds dial_timeout{std::chrono::seconds(5)};
  // The longest any one request may take once connected.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(5)};
  // How long an authentication token is used before a fresh one is fetched.
  std::chrono::milliseconds token_refresh{std::chrono::seconds(60)};
};

// The endpoints as one line for messages: "127.0.0.1:2379,127.0.0.1:22379".
std::string endpoints_text(const std::vector<std::string>& endpoints);

// What a gRPC status means: errc::cluster_unavailable (no endpoint
// answered in time), errc::cluster_refused (TLS or credentials),
// errc::cluster_failed (any other error answer); no error for OK.
std::error_code error_of(const grpc::Status& status) noexcept;

// The streams of a client still under way. gRPC must be done with every
// stream of a channel before the channel goes (their callbacks run on a
// completion queue that the last channel shuts down), so the client's
// destructor waits for them. Thread-safe.
class OpenStreams final {
 public:
  void opened();
  // From a stream's OnDone, as its last act.
  void closed();
  void wait_until_none();

 private:
  std::mutex mutex_;
  std::condition_variable none_;
  int open_ = 0;
};

// The lease keep-alive stream of a client, one for all its leases: renew()
// sends without waiting, and the answers are kept for last_answer(). A
// stream that ends (its member went away) is replaced by the next renew(),
// on whichever member the channel reaches then.
class LeaseKeeper final {
 public:
  struct Answer {
    std::int64_t ttl = 0;  // seconds; <= 0: the lease is gone
    std::chrono::steady_clock::time_point at{};
  };

  explicit LeaseKeeper(const class EtcdClient& client) noexcept : client_(client) {}
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  void renew(std::int64_t lease);
  std::optional<Answer> last_answer(std::int64_t lease) const;
  void forget(std::int64_t lease);
  // Ends the stream (the client is going).
  void cancel() noexcept;

 private:
  class Stream;
  struct Answers {
    mutable std::mutex mutex;
    std::map<std::int64_t, Answer> by_lease;
  };

  const class EtcdClient& client_;
  std::shared_ptr<Answers> answers_ = std::make_shared<Answers>();
  std::mutex mutex_;
  std::shared_ptr<Stream> stream_;
};

// Leases ready for a client's next hold, one per TTL, so that an
// acquisition need not wait for a grant: the lease of a hold that released
// its key, or one granted ahead. A lease serves one hold at a time. A
// client grants spares from its second acquisition on, so a command that
// takes one lock grants none; a spare not renewed for half its TTL is left
// to expire (it has no key), and the client revokes its spares when it
// goes. Thread-safe.
class SpareLeases final {
 public:
  struct Lease {
    std::int64_t id = 0;
    std::chrono::seconds ttl{0};  // as etcd granted it
    std::chrono::steady_clock::time_point granted_at{};
  };

  explicit SpareLeases(const class EtcdClient& client) noexcept : client_(client) {}
  SpareLeases(const SpareLeases&) = delete;
  SpareLeases& operator=(const SpareLeases&) = delete;

  // A spare asked for with `ttl`, fresh; or none, and then one is granted
  // in the background for the next time.
  std::optional<Lease> take(std::chrono::seconds ttl);
  // A lease whose hold released its key: the next spare of `ttl` (revoked
  // when there is one already).
  void give_back(std::chrono::seconds ttl, Lease lease);
  // Revokes every spare, and each granted from now on, without waiting
  // (the client is going).
  void revoke_all();

 private:
  void grant(std::chrono::seconds ttl);
  void revoke(std::int64_t lease);

  const class EtcdClient& client_;
  std::mutex mutex_;
  std::map<std::int64_t, Lease> ready_;  // by the TTL asked for
  std::map<std::int64_t, bool> granting_;
  int asked_ = 0;
  bool closing_ = false;
};

class EtcdClient final {
 public:
  // Dials the endpoints (within settings.dial_timeout) and, with a user,
  // authenticates. Errors: the codes of error_of(), or an OS error reading
  // a TLS file.
  static std::shared_ptr<EtcdClient> connect(const EtcdSettings& settings, std::error_code& ec);

  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;
  // Returns once gRPC is done with every stream of the client.
  ~EtcdClient();

  const EtcdSettings& settings() const noexcept { return settings_; }

  // A context for one call: the request deadline and the credentials.
  std::unique_ptr<grpc::ClientContext> context() const;
  // The same for a stream that lives as long as it is needed.
  std::unique_ptr<grpc::ClientContext> stream_context() const;
  // Fetches a fresh token in the background when the one in use is
  // token_refresh old. The heartbeat asks at every beat: a hold whose only
  // traffic is its lease's keep-alive stream would let etcd forget it.
  void keep_token_fresh() const;

  etcdserverpb::KV::Stub& kv() const noexcept { return *kv_; }
  etcdserverpb::Lease::Stub& lease() const noexcept { return *lease_; }
  etcdserverpb::Watch::Stub& watch() const noexcept { return *watch_; }
  LeaseKeeper& lease_keeper() const noexcept { return keeper_; }
  SpareLeases& spare_leases() const noexcept { return spares_; }
  // What every stream of the client reports to.
  const std::shared_ptr<OpenStreams>& open_streams() const noexcept { return streams_; }

 private:
  EtcdClient(EtcdSettings settings, std::shared_ptr<grpc::Channel> channel);
  std::error_code authenticate();
  // The token for a call about to be made ("" without a user). One idle
  // for two refresh periods may have expired: it is fetched again first.
  std::string current_token() const;
  std::error_code fetch_token(std::string& token) const;
  void fetch_token_async() const;
  void start_token_fetch() const noexcept;
  void take_token(std::error_code ec, std::string token) const;

  EtcdSettings settings_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth_;
  // From Authenticate, when there is a user; guarded by token_mutex_.
  mutable std::mutex token_mutex_;
  mutable std::string token_;
  mutable std::chrono::steady_clock::time_point token_at_;  // when fetched
  mutable bool fetching_ = false;
  std::shared_ptr<OpenStreams> streams_ = std::make_shared<OpenStreams>();
  mutable LeaseKeeper keeper_{*this};
  mutable SpareLeases spares_{*this};
};

// A synchronous unary call: `method` is a stub's member, e.g.
// &etcdserverpb::KV::Stub::Range.
template <typename Stub, typename Request, typename Response>
std::error_code call(const EtcdClient& client, Stub& stub,
                     grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                     const Request& request, Response& response) {
  const auto context = client.context();
  return error_of((stub.*method)(context.get(), request, &response));
}

// A unary call that does not block: `stub` is a stub's async(), `method`
// one of its members, e.g. &etcdserverpb::KV::Stub::async::Txn. `done`
// (if any) runs once, on a gRPC thread, with the status and the answer;
// the client waits for it before it goes, so `done` must not let the last
// reference to the client go.
template <typename Async, typename Request, typename Response>
void call_async(const EtcdClient& client, Async* stub,
                void (Async::*method)(grpc::ClientContext*, const Request*, Response*,
                                      std::function<void(grpc::Status)>),
                Request request,
                std::function<void(const grpc::Status&, const Response&)> done = nullptr);

// Sends a transaction and does not wait for its answer, which nobody
// reads: for a write whose failure changes nothing (a record's time).
void send_txn(const EtcdClient& client, etcdserverpb::TxnRequest request);

template <typename Async, typename Request, typename Response>
void call_async(const EtcdClient& client, Async* stub,
                void (Async::*method)(grpc::ClientContext*, const Request*, Response*,
                                      std::function<void(grpc::Status)>),
                Request request, std::function<void(const grpc::Status&, const Response&)> done) {
  // Owned by gRPC's callback until the call is done.
  struct Call {
    std::unique_ptr<grpc::ClientContext> context;
    Request request;
    Response response;
    std::shared_ptr<OpenStreams> streams;
    std::function<void(const grpc::Status&, const Response&)> done;
  };
  auto call = std::make_shared<Call>(
      Call{client.context(), std::move(request), {}, client.open_streams(), std::move(done)});
  call->streams->opened();
  (stub->*method)(call->context.get(), &call->request, &call->response,
                  [call](const grpc::Status& status) mutable {
                    const std::shared_ptr<OpenStreams> streams = call->streams;
                    if (call->done) call->done(status, call->response);
                    call.reset();
                    streams->closed();  // the client may go from here on
                  });
}

// Waits for the deletion of one key from a revision on: a watch stream of
// its own, ended by cancel() or by the event. `on_end` runs once, on a gRPC
// thread: with no error when the key was deleted (or was already gone at
// that revision); errc::cancelled after cancel() and only then; else why
// the watch ended without seeing the key go (errc::cluster_failed when
// etcd cancelled it, having compacted that revision away, say).
//
// Or the deletions of a range of keys, [key, range_end): `ends` is asked of
// each deleted key with its revision, in order, and the watch ends (with no
// error) once it has said so. It is asked of every deletion in a response
// before the watch ends, and etcd sends all the events of one revision in
// one response: the deletions of one transaction are all seen together.
class KeyDeletion final : public std::enable_shared_from_this<KeyDeletion> {
 public:
  using Ends = std::function<bool(const std::string& key, std::int64_t revision)>;

  static std::shared_ptr<KeyDeletion> watch(const EtcdClient& client, std::string key,
                                            std::int64_t from_revision,
                                            std::function<void(std::error_code)> on_end);
  static std::shared_ptr<KeyDeletion> watch_range(const EtcdClient& client, std::string key,
                                                  std::string range_end, Ends ends,
                                                  std::int64_t from_revision,
                                                  std::function<void(std::error_code)> on_end);
  ~KeyDeletion();
  void cancel() noexcept;

 private:
  class Reactor;
  KeyDeletion() = default;
  std::shared_ptr<Reactor> reactor_;
};

}  // namespace packlock::detail
