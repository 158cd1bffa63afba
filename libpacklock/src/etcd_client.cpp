#include "etcd_client.hpp"

#include <arpa/inet.h>

#include <atomic>
#include <deque>
#include <cerrno>
#include <fstream>
#include <mutex>
#include <sstream>

#include <grpc/grpc.h>
#include <grpc/support/log.h>

#include <packlock/error.hpp>

#include "fork.hpp"

namespace packlock::detail {
namespace {

using etcdserverpb::WatchCreateRequest;
using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

struct Endpoint {
  std::string host;  // without brackets
  std::string port;
  bool tls = false;
};

Endpoint parse_endpoint(std::string text) {
  Endpoint endpoint;
  for (const std::string scheme : {"http://", "https://"}) {
    if (text.rfind(scheme, 0) == 0) {
      endpoint.tls = scheme == "https://";
      text.erase(0, scheme.size());
    }
  }
  if (const auto slash = text.find('/'); slash != std::string::npos) text.erase(slash);
  const auto colon = text.rfind(':');
  const auto bracket = text.rfind(']');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    endpoint.port = text.substr(colon + 1);
    text.erase(colon);
  } else {
    endpoint.port = "2379";
  }
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  endpoint.host = text;
  return endpoint;
}

bool is_address(const std::string& host, int family) {
  unsigned char buffer[16];
  return ::inet_pton(family, host.c_str(), buffer) == 1;
}

// gRPC's target for the endpoints: literal addresses of one family as one
// list, among which the channel fails over; a host name is resolved by
// gRPC (one name: several would need a resolver of our own).
std::string channel_target(const std::vector<Endpoint>& endpoints) {
  for (const int family : {AF_INET, AF_INET6}) {
    bool all = true;
    std::string list;
    for (const Endpoint& e : endpoints) {
      all = all && is_address(e.host, family);
      if (!list.empty()) list += ',';
      list += family == AF_INET6 ? "[" + e.host + "]:" + e.port : e.host + ":" + e.port;
    }
    if (all) return (family == AF_INET ? "ipv4:" : "ipv6:") + list;
  }
  return "dns:///" + endpoints.front().host + ":" + endpoints.front().port;
}

std::error_code read_file(const std::string& path, std::string& text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {errno != 0 ? errno : ENOENT, std::system_category()};
  std::ostringstream all;
  all << in.rdbuf();
  text = all.str();
  return {};
}

std::shared_ptr<grpc::ChannelCredentials> credentials(const EtcdSettings& settings, bool tls,
                                                      std::error_code& ec) {
  if (!tls && settings.cacert.empty() && settings.cert.empty() && settings.key.empty()) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions options;
  if (!settings.cacert.empty() && (ec = read_file(settings.cacert, options.pem_root_certs))) return nullptr;
  if (!settings.cert.empty() && (ec = read_file(settings.cert, options.pem_cert_chain))) return nullptr;
  if (!settings.key.empty() && (ec = read_file(settings.key, options.pem_private_key))) return nullptr;
  return grpc::SslCredentials(options);
}

bool mentions_tls(const std::string& message) {
  for (const char* word : {"handshake", "SSL", "ssl", "certificate", "TLS", "tls"}) {
    if (message.find(word) != std::string::npos) return true;
  }
  return false;
}

bool mentions_auth(const std::string& message) {
  return message.find("user name is empty") != std::string::npos ||
         message.find("authentication failed") != std::string::npos;
}

}  // namespace

std::string endpoints_text(const std::vector<std::string>& endpoints) {
  std::string text;
  for (const std::string& endpoint : endpoints) {
    if (!text.empty()) text += ',';
    text += endpoint;
  }
  return text;
}

std::error_code error_of(const grpc::Status& status) noexcept {
  switch (status.error_code()) {
    case grpc::StatusCode::OK: return {};
    case grpc::StatusCode::UNAVAILABLE:
      // A refused handshake looks like an endpoint that cannot be reached;
      // only its message tells them apart.
      return mentions_tls(status.error_message()) ? errc::cluster_refused : errc::cluster_unavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return errc::cluster_unavailable;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED: return errc::cluster_refused;
    case grpc::StatusCode::CANCELLED: return errc::cancelled;
    case grpc::StatusCode::INVALID_ARGUMENT:
      // etcd's "user name is empty" (auth is on, no user given) and
      // "authentication failed" come with this code.
      return mentions_auth(status.error_message()) ? errc::cluster_refused : errc::cluster_failed;
    default: return errc::cluster_failed;
  }
}

void OpenStreams::opened() {
  std::lock_guard lock(mutex_);
  ++open_;
}

void OpenStreams::closed() {
  std::lock_guard lock(mutex_);
  if (--open_ == 0) none_.notify_all();
}

void OpenStreams::wait_until_none() {
  std::unique_lock lock(mutex_);
  none_.wait(lock, [this] { return open_ == 0; });
}

EtcdClient::~EtcdClient() {
  spares_.revoke_all();
  keeper_.cancel();
  streams_->wait_until_none();
}

EtcdClient::EtcdClient(EtcdSettings settings, std::shared_ptr<grpc::Channel> channel)
    : settings_(std::move(settings)),
      channel_(std::move(channel)),
      kv_(etcdserverpb::KV::NewStub(channel_)),
      lease_(etcdserverpb::Lease::NewStub(channel_)),
      watch_(etcdserverpb::Watch::NewStub(channel_)),
      auth_(etcdserverpb::Auth::NewStub(channel_)) {}

std::shared_ptr<EtcdClient> EtcdClient::connect(const EtcdSettings& settings, std::error_code& ec) {
  // gRPC shuts itself down when its last channel goes, while streams of
  // that channel may still be finishing; a client made meanwhile would
  // find it half torn down. It stays up for the life of the process.
  // Its own log lines (a refused handshake, a lost connection) are not
  // written to the application's stderr: the errors come back as codes.
  static const bool grpc_kept_up = (gpr_set_log_function([](gpr_log_func_args*) {}), grpc_init(), true);
  (void)grpc_kept_up;
  ec.clear();
  if (settings.endpoints.empty()) {
    ec = errc::cluster_unavailable;
    return nullptr;
  }
  std::vector<Endpoint> endpoints;
  bool tls = false;
  for (const std::string& text : settings.endpoints) {
    endpoints.push_back(parse_endpoint(text));
    tls = tls || endpoints.back().tls;
  }
  const auto creds = credentials(settings, tls, ec);
  if (ec) return nullptr;
  grpc::ChannelArguments arguments;
  // A member that stops answering is given up on within the dial timeout.
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(settings.dial_timeout.count()));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(settings.dial_timeout.count()));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto channel = grpc::CreateCustomChannel(channel_target(endpoints), creds, arguments);
  // A forked child leaves the parent's client alone: its streams are the
  // parent's, and gRPC's threads are not in the child to end them.
  std::shared_ptr<EtcdClient> client(new EtcdClient(settings, std::move(channel)),
                                     [generation = fork_generation()](EtcdClient* gone) {
                                       if (fork_generation() == generation) delete gone;
                                     });
  const auto deadline = std::chrono::system_clock::now() + settings.dial_timeout;
  if (!client->channel_->WaitForConnected(deadline)) {
    // One request says why: unreachable, or a refused handshake.
    etcdserverpb::RangeRequest request;
    request.set_key("\0", 1);
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    ec = error_of(client->kv().Range(&context, request, &response));
    if (!ec || ec == errc::cluster_failed) ec = errc::cluster_unavailable;
    return nullptr;
  }
  if (!settings.user.empty() && (ec = client->authenticate())) return nullptr;
  return client;
}

namespace {

// An Authenticate call carries no token: etcd refuses an expired one even
// there.
std::unique_ptr<grpc::ClientContext> auth_context(const EtcdSettings& settings) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + settings.request_timeout);
  return context;
}

etcdserverpb::AuthenticateRequest auth_request(const EtcdSettings& settings) {
  etcdserverpb::AuthenticateRequest request;
  request.set_name(settings.user);
  request.set_password(settings.password);
  return request;
}

}  // namespace

std::error_code EtcdClient::authenticate() {
  std::string token;
  const std::error_code ec = fetch_token(token);
  take_token(ec, std::move(token));
  return ec;
}

std::error_code EtcdClient::fetch_token(std::string& token) const {
  etcdserverpb::AuthenticateResponse response;
  const auto context = auth_context(settings_);
  const std::error_code ec =
      error_of(auth_->Authenticate(context.get(), auth_request(settings_), &response));
  if (!ec) token = response.token();
  return ec;
}

void EtcdClient::fetch_token_async() const {
  struct Call {
    std::unique_ptr<grpc::ClientContext> context;
    etcdserverpb::AuthenticateRequest request;
    etcdserverpb::AuthenticateResponse response;
  };
  auto call = std::make_shared<Call>(Call{auth_context(settings_), auth_request(settings_), {}});
  // The client waits for the answer before it goes (open streams).
  streams_->opened();
  auth_->async()->Authenticate(call->context.get(), &call->request, &call->response,
                               [this, call](const grpc::Status& status) {
                                 take_token(error_of(status), call->response.token());
                                 const std::shared_ptr<OpenStreams> streams = streams_;
                                 streams->closed();  // the client may go from here on
                               });
}

// A fetch that failed is tried again a second later, not at every call.
void EtcdClient::take_token(std::error_code ec, std::string token) const {
  std::lock_guard lock(token_mutex_);
  fetching_ = false;
  const auto now = std::chrono::steady_clock::now();
  if (ec) {
    token_at_ = std::min(token_at_, now - settings_.token_refresh + std::chrono::seconds(1));
    return;
  }
  token_ = std::move(token);
  token_at_ = now;
}

std::string EtcdClient::current_token() const {
  if (settings_.user.empty()) return {};
  std::unique_lock lock(token_mutex_);
  const auto age = std::chrono::steady_clock::now() - token_at_;
  if (fetching_ || age < settings_.token_refresh) return token_;
  fetching_ = true;
  lock.unlock();
  if (age < 2 * settings_.token_refresh) {
    start_token_fetch();
  } else {
    std::string token;
    const std::error_code ec = fetch_token(token);
    take_token(ec, std::move(token));
  }
  lock.lock();
  return token_;
}

void EtcdClient::keep_token_fresh() const {
  if (settings_.user.empty()) return;
  {
    std::lock_guard lock(token_mutex_);
    if (fetching_ || std::chrono::steady_clock::now() - token_at_ < settings_.token_refresh) return;
    fetching_ = true;
  }
  start_token_fetch();
}

// Outside token_mutex_: gRPC may run the answer's callback at once, here.
void EtcdClient::start_token_fetch() const noexcept {
  try {
    fetch_token_async();
  } catch (const std::bad_alloc&) {
    take_token(std::make_error_code(std::errc::not_enough_memory), {});
  }
}

std::unique_ptr<grpc::ClientContext> EtcdClient::context() const {
  auto context = stream_context();
  context->set_deadline(std::chrono::system_clock::now() + settings_.request_timeout);
  return context;
}

std::unique_ptr<grpc::ClientContext> EtcdClient::stream_context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (const std::string token = current_token(); !token.empty()) context->AddMetadata("token", token);
  return context;
}

void send_txn(const EtcdClient& client, etcdserverpb::TxnRequest request) {
  call_async(client, client.kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(request));
}

// The watch stream of one KeyDeletion. It owns itself from the start of
// the call until gRPC is done with it (OnDone).
class KeyDeletion::Reactor final
    : public grpc::ClientBidiReactor<WatchRequest, WatchResponse> {
 public:
  Reactor(const EtcdClient& client, std::string key, std::string range_end, Ends ends,
          std::int64_t from_revision, std::function<void(std::error_code)> on_end)
      : context_(client.stream_context()),
        ends_(std::move(ends)),
        on_end_(std::move(on_end)),
        streams_(client.open_streams()) {
    WatchCreateRequest* create = request_.mutable_create_request();
    create->set_key(std::move(key));
    if (!range_end.empty()) create->set_range_end(std::move(range_end));
    // Never `fragment`: the events of one revision then come in one
    // answer, which the callers of watch_range rely on.
    create->set_start_revision(from_revision);
    create->add_filters(WatchCreateRequest::NOPUT);
    client.watch().async()->Watch(context_.get(), this);
  }

  void start(std::shared_ptr<Reactor> self) {
    self_ = std::move(self);
    streams_->opened();
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }

  void cancel() noexcept {
    cancelled_ = true;
    // An ended watch has been cancelled by end(), on gRPC's thread: the
    // waiter that drops it after its deletion does not wait for gRPC.
    if (!ended_) context_->TryCancel();
  }

 private:
  void OnWriteDone(bool) override {}

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ends: OnDone says why
    bool over = false;
    for (const auto& event : response_.events()) {
      if (event.type() != mvccpb::Event::DELETE) continue;
      // Every deletion is told, also after one that ends the watch.
      over = (!ends_ || ends_(event.kv().key(), event.kv().mod_revision())) || over;
    }
    if (over) return end({});
    // Compacted past the revision, or refused: the key may be gone or not;
    // the caller looks.
    if (response_.canceled()) return end(errc::cluster_failed);
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    // Only cancel() makes errc::cancelled: any other end (the server or the
    // channel ended the stream) is a failed watch.
    std::error_code ec = cancelled_ ? make_error_code(errc::cancelled) : error_of(status);
    if (!ec || (ec == errc::cancelled && !cancelled_)) ec = errc::cluster_failed;
    end(ec);
    const std::shared_ptr<OpenStreams> streams = streams_;
    self_.reset();  // may destroy this
    streams->closed();
  }

  // Reports once; the stream is then ended.
  void end(std::error_code ec) {
    if (ended_.exchange(true)) return;
    on_end_(ec);
    context_->TryCancel();
  }

  std::unique_ptr<grpc::ClientContext> context_;
  const Ends ends_;  // empty: the one key's deletion ends the watch
  std::function<void(std::error_code)> on_end_;
  std::shared_ptr<OpenStreams> streams_;
  WatchRequest request_;
  WatchResponse response_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> ended_{false};
  std::shared_ptr<Reactor> self_;
};

// One LeaseKeepAlive stream. It owns itself from the start of the call
// until gRPC is done with it; the answers outlive both it and its keeper.
class LeaseKeeper::Stream final
    : public grpc::ClientBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                     etcdserverpb::LeaseKeepAliveResponse> {
 public:
  Stream(const EtcdClient& client, std::shared_ptr<Answers> answers)
      : context_(client.stream_context()),
        answers_(std::move(answers)),
        streams_(client.open_streams()) {
    client.lease().async()->LeaseKeepAlive(context_.get(), this);
  }

  // Writes start from outside the reactions (the heartbeat thread), so the
  // stream is held open (AddHold) until its reads have ended and no write
  // is under way: gRPC tears a stream down once nothing holds it.
  void start(std::shared_ptr<Stream> self) {
    self_ = std::move(self);
    streams_->opened();
    AddHold();
    StartRead(&response_);
    StartCall();
  }

  // False once the stream has ended: the caller makes a new one.
  bool send(std::int64_t lease) {
    {
      std::lock_guard lock(mutex_);
      if (ended_) return false;
      pending_.push_back(lease);
      if (writing_) return true;
      writing_ = true;
      request_.set_id(pending_.front());
      pending_.pop_front();
    }
    // Not under the mutex (OnWriteDone takes it); writing_ keeps the hold.
    StartWrite(&request_);
    return true;
  }

  void cancel() noexcept { context_->TryCancel(); }

 private:
  void OnWriteDone(bool ok) override {
    {
      std::unique_lock lock(mutex_);
      if (!ok) ended_ = true;
      if (ended_ || pending_.empty()) {
        writing_ = false;
        release_hold(lock);
        return;
      }
      request_.set_id(pending_.front());
      pending_.pop_front();
    }
    StartWrite(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the stream ends
      std::unique_lock lock(mutex_);
      ended_ = true;
      release_hold(lock);
      return;
    }
    {
      std::lock_guard lock(answers_->mutex);
      // An answer for a lease let go of meanwhile is not kept.
      if (const auto found = answers_->by_lease.find(response_.id()); found != answers_->by_lease.end()) {
        found->second = {response_.ttl(), std::chrono::steady_clock::now()};
      }
    }
    StartRead(&response_);
  }

  // Once the stream has ended and no write is under way.
  void release_hold(std::unique_lock<std::mutex>& lock) {
    if (!ended_ || writing_ || !held_) return;
    held_ = false;
    lock.unlock();
    RemoveHold();
  }

  void OnDone(const grpc::Status&) override {
    {
      std::lock_guard lock(mutex_);
      ended_ = true;
    }
    const std::shared_ptr<OpenStreams> streams = streams_;
    self_.reset();  // may destroy this
    streams->closed();
  }

  std::unique_ptr<grpc::ClientContext> context_;
  std::shared_ptr<Answers> answers_;
  std::shared_ptr<OpenStreams> streams_;
  std::mutex mutex_;
  std::deque<std::int64_t> pending_;
  bool writing_ = false;
  bool ended_ = false;
  bool held_ = true;  // AddHold() not yet undone
  etcdserverpb::LeaseKeepAliveRequest request_;
  etcdserverpb::LeaseKeepAliveResponse response_;
  std::shared_ptr<Stream> self_;
};

LeaseKeeper::~LeaseKeeper() { cancel(); }

void LeaseKeeper::cancel() noexcept {
  std::lock_guard lock(mutex_);
  if (stream_) stream_->cancel();
}

void LeaseKeeper::renew(std::int64_t lease) {
  {
    std::lock_guard lock(answers_->mutex);
    answers_->by_lease.try_emplace(lease);  // tracked; no answer yet
  }
  std::lock_guard lock(mutex_);
  if (stream_ && stream_->send(lease)) return;
  stream_ = std::make_shared<Stream>(client_, answers_);
  stream_->start(stream_);
  stream_->send(lease);
}

std::optional<LeaseKeeper::Answer> LeaseKeeper::last_answer(std::int64_t lease) const {
  std::lock_guard lock(answers_->mutex);
  const auto found = answers_->by_lease.find(lease);
  if (found == answers_->by_lease.end() || found->second.at == std::chrono::steady_clock::time_point{}) {
    return std::nullopt;
  }
  return found->second;
}

void LeaseKeeper::forget(std::int64_t lease) {
  std::lock_guard lock(answers_->mutex);
  answers_->by_lease.erase(lease);
}

std::optional<SpareLeases::Lease> SpareLeases::take(std::chrono::seconds ttl) {
  std::optional<Lease> spare;
  {
    std::lock_guard lock(mutex_);
    ++asked_;
    const auto found = ready_.find(ttl.count());
    if (found != ready_.end()) {
      // Young enough to outlive the acquisition's first renewal.
      if (std::chrono::steady_clock::now() - found->second.granted_at < found->second.ttl / 2) {
        spare = found->second;
      }
      ready_.erase(found);
    }
    // A miss from the second acquisition on: one is granted for the next.
    if (spare || asked_ < 2 || granting_[ttl.count()]) return spare;
    granting_[ttl.count()] = true;
  }
  grant(ttl);
  return spare;
}

void SpareLeases::give_back(std::chrono::seconds ttl, Lease lease) {
  {
    std::lock_guard lock(mutex_);
    const auto [kept, added] = ready_.try_emplace(ttl.count(), lease);
    if (added) return;
    // One spare per TTL: the fresher one stays.
    if (kept->second.granted_at < lease.granted_at) std::swap(kept->second, lease);
  }
  revoke(lease.id);
}

void SpareLeases::revoke_all() {
  std::map<std::int64_t, Lease> spares;
  {
    std::lock_guard lock(mutex_);
    closing_ = true;  // a grant still under way revokes its lease
    spares.swap(ready_);
  }
  for (const auto& [ttl, lease] : spares) revoke(lease.id);
}

void SpareLeases::revoke(std::int64_t lease) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  call_async(client_, client_.lease().async(), &etcdserverpb::Lease::Stub::async::LeaseRevoke,
             std::move(request));
}

void SpareLeases::grant(std::chrono::seconds ttl) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl.count());
  call_async(client_, client_.lease().async(), &etcdserverpb::Lease::Stub::async::LeaseGrant,
             std::move(request),
             std::function<void(const grpc::Status&, const etcdserverpb::LeaseGrantResponse&)>(
                 [this, ttl](const grpc::Status& status, const etcdserverpb::LeaseGrantResponse& granted) {
                   if (!status.ok() || !granted.error().empty() || granted.id() == 0) {
                     std::lock_guard lock(mutex_);
                     granting_[ttl.count()] = false;
                     return;
                   }
                   Lease fresh{granted.id(), std::chrono::seconds(granted.ttl()),
                               std::chrono::steady_clock::now()};
                   {
                     std::lock_guard lock(mutex_);
                     granting_[ttl.count()] = false;
                     if (closing_) {
                       // The client is going: its spares are revoked.
                     } else if (const auto [kept, added] = ready_.try_emplace(ttl.count(), fresh); added) {
                       return;
                     } else {
                       std::swap(kept->second, fresh);  // the fresher one stays
                     }
                   }
                   // This call is still open: the client waits for this one too.
                   revoke(fresh.id);
                 }));
}

std::shared_ptr<KeyDeletion> KeyDeletion::watch(const EtcdClient& client, std::string key,
                                                std::int64_t from_revision,
                                                std::function<void(std::error_code)> on_end) {
  return watch_range(client, std::move(key), "", nullptr, from_revision, std::move(on_end));
}

std::shared_ptr<KeyDeletion> KeyDeletion::watch_range(const EtcdClient& client, std::string key,
                                                      std::string range_end, Ends ends,
                                                      std::int64_t from_revision,
                                                      std::function<void(std::error_code)> on_end) {
  std::shared_ptr<KeyDeletion> deletion(new KeyDeletion());
  deletion->reactor_ = std::make_shared<Reactor>(client, std::move(key), std::move(range_end),
                                                 std::move(ends), from_revision, std::move(on_end));
  deletion->reactor_->start(deletion->reactor_);
  return deletion;
}

KeyDeletion::~KeyDeletion() { cancel(); }

void KeyDeletion::cancel() noexcept {
  if (reactor_) reactor_->cancel();
}

}  // namespace packlock::detail
