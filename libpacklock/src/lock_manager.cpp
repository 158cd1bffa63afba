// LockManager: names mapped to packs below a lock directory, and the
// steps of its two faces. Everything that touches a lock goes through the
// engine (engine.hpp, the asynchronous acquire) and the process-wide
// bookkeeping of requests (request_registry.hpp).

#include <packlock/lock_manager.hpp>

#include <packlock/observe.hpp>

#include "engine.hpp"
#include "hold.hpp"
#include "lock_name.hpp"
#include "manager_state.hpp"
#include "pack.hpp"
#include "request_registry.hpp"

namespace packlock {
namespace detail {

namespace {

std::filesystem::path pack_of(const ManagerState& state, std::string_view name) {
  return state.lock_dir() / std::string(name);
}

// Whether the calling thread, holding a cluster lock as `held`, must not
// ask for it in `mode`: it would wait for itself. A reader may read again.
bool waits_for_itself(const std::optional<Mode>& held, Mode mode) noexcept {
  return held && (*held == Mode::exclusive || mode == Mode::exclusive);
}

// Waits in the engine (blocking the calling thread) and grants the ticket.
void wait_for(Ticket& ticket, const Timeout& timeout, Mode mode, std::error_code& ec) noexcept {
  if (const ClusterLock* cluster = ticket.cluster_lock()) {
    const std::optional<Mode> held = ticket.held_by_this_thread();
    if (waits_for_itself(held, mode)) {
      ec = errc::busy;
      return;
    }
    // A reader again: at once or not at all, since it would queue behind
    // a writer that waits for this thread's first read.
    ClusterLockHold hold = held ? cluster->try_acquire(mode, ec) : cluster->acquire(mode, timeout, ec);
    if (!ec) ticket.grant(std::move(hold), /*tied_to_thread=*/true);
    return;
  }
  std::unique_ptr<Hold> hold = acquire(ticket.pack(), mode, deadline_of(timeout), ec);
  if (!ec) ticket.grant(HoldAccess::wrap(std::move(hold)));
}

// take_now() for a pack's lock: the engine's try, or its steal.
void take_pack_lock_now(Ticket& ticket, const RequestOptions& options, bool tied_to_thread,
                        std::error_code& ec) noexcept {
  const ThreadToken thread = tied_to_thread ? this_thread_token() : kNoThread;
  const std::shared_ptr<const Pack> pack = ticket.pack();
  std::unique_ptr<Hold> hold;
  if (options.steal) {
    hold = acquire_ahead(
        pack, options.mode, thread, [&] { RequestRegistry::instance().revoke_holders(*pack); }, ec);
  } else {
    hold = try_acquire(pack, options.mode, ec, thread);
  }
  if (!ec) ticket.grant(HoldAccess::wrap(std::move(hold)));
}

// take_now() for a cluster lock, in the calling thread: a few round trips
// (a lease, unless the connection has one spare; the put and look; a
// steal's delete). The holders this process robs are told at once; others
// hear it from their key's watch.
void take_cluster_lock_now(Ticket& ticket, const RequestOptions& options, bool tied_to_thread,
                           std::error_code& ec) noexcept {
  const std::optional<Mode> held = tied_to_thread ? ticket.held_by_this_thread() : std::nullopt;
  if (waits_for_itself(held, options.mode)) {
    ec = errc::busy;
    return;
  }
  const ClusterLock& cluster = *ticket.cluster_lock();
  ClusterLockHold hold = options.steal ? cluster.steal(ec) : cluster.try_acquire(options.mode, ec);
  if (ec) return;
  if (options.steal) RequestRegistry::instance().revoke_holders(*ticket.cluster());
  ticket.grant(std::move(hold), tied_to_thread);
}

}  // namespace

Ticket& Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    (void)release();
    entry_ = std::move(other.entry_);
  }
  return *this;
}

std::optional<Lock> Ticket::lock() const {
  if (!entry_ || !entry_->granted()) return std::nullopt;
  return Lock(entry_);
}

std::shared_ptr<const Pack> Ticket::pack() const noexcept {
  return entry_ ? entry_->pack() : nullptr;
}

const ClusterTarget* Ticket::cluster() const noexcept {
  return entry_ ? entry_->cluster() : nullptr;
}

const ClusterLock* Ticket::cluster_lock() const noexcept {
  return cluster() ? &cluster()->lock : nullptr;
}

std::optional<Mode> Ticket::held_by_this_thread() const {
  if (!cluster()) return std::nullopt;
  return RequestRegistry::instance().held_by_thread(*cluster(), this_thread_token());
}

void Ticket::grant(PackLockHold hold) noexcept { entry_->grant(std::move(hold), kNoThread); }

void Ticket::grant(ClusterLockHold hold, bool tied_to_thread) noexcept {
  entry_->grant(std::move(hold), tied_to_thread ? this_thread_token() : kNoThread);
}

std::error_code Ticket::release() noexcept {
  if (!entry_) return {};
  const std::shared_ptr<RequestEntry> entry = std::move(entry_);
  // Released before it leaves the bookkeeping: a steal that still finds it
  // waits on the entry for this release, rather than missing a holder.
  const std::error_code ec = entry->release();
  RequestRegistry::instance().remove(*entry);
  return ec;
}

Ticket open_ticket(const std::shared_ptr<ManagerState>& state, std::string_view name, Mode mode,
                   std::error_code& ec) noexcept try {
  ec = check_lock_name(name);
  if (ec) return {};
  std::shared_ptr<RequestEntry> entry;
  if (state->over_cluster()) {
    ClusterTarget cluster = state->cluster_target(name, ec);
    if (ec) return {};
    entry = std::make_shared<RequestEntry>(std::string(name), mode, state->client(), std::move(cluster));
  } else {
    std::shared_ptr<const Pack> pack = state->pack_for(name, pack_of(*state, name), ec);
    if (ec) return {};
    entry = std::make_shared<RequestEntry>(std::string(name), mode, state->client(), std::move(pack));
  }
  RequestRegistry::instance().add(entry);
  return Ticket(std::move(entry));
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

std::error_code check_options(const RequestOptions& options) noexcept {
  // Web Locks refuses these with NotSupportedError: a steal is exclusive
  // and immediate, and if_available never waits, so neither can be
  // combined with the other or take a timeout.
  const bool immediate = options.steal || options.if_available;
  if ((options.steal && options.if_available) || (options.steal && options.mode == Mode::shared) ||
      (immediate && options.timeout)) {
    return errc::conflicting_options;
  }
  return {};
}

void take_now(Ticket& ticket, const RequestOptions& options, bool tied_to_thread,
              std::error_code& ec) noexcept {
  if (ticket.cluster_lock()) {
    take_cluster_lock_now(ticket, options, tied_to_thread, ec);
  } else {
    take_pack_lock_now(ticket, options, tied_to_thread, ec);
  }
  if (ec == errc::busy && options.if_available) {
    ec.clear();
    (void)ticket.release();
  }
}

Ticket begin_request(const std::shared_ptr<ManagerState>& state, std::string_view name,
                     const RequestOptions& options, std::error_code& ec) noexcept {
  ec = check_options(options);
  if (ec) return {};
  Ticket ticket = open_ticket(state, name, options.mode, ec);
  if (ec) return {};
  if (options.if_available || options.steal) {
    take_now(ticket, options, /*tied_to_thread=*/true, ec);
  } else {
    wait_for(ticket, options.timeout, options.mode, ec);
  }
  if (ec) return {};
  return ticket;
}

LockHandle keep_as_handle(ManagerState& state, Ticket&& ticket) {
  const Lock lock = *ticket.lock();
  return state.keep(std::move(ticket), lock.name(), lock.fencing_token());
}

Error named_error(const ManagerState& state, std::string_view name, std::error_code ec) {
  const char* verb = ec == errc::unlock_unsuccessful ? "unlock" : "lock";
  if (state.over_cluster()) return Error(ec, verb, state.cluster_name(printable_name(name)));
  // Not `/`: an invalid name may be absolute, and would replace the directory.
  if (!is_lock_name(name)) {
    return Error(ec, verb, state.lock_dir().string() + '/' + printable_name(name));
  }
  return Error(ec, verb, pack_of(state, name) / state.options().sidecar_name);
}

}  // namespace detail

const std::string& Lock::name() const noexcept { return entry_->name(); }
Mode Lock::mode() const noexcept { return entry_->mode(); }
bool Lock::lost() const noexcept { return entry_->lost(); }
std::int64_t Lock::fencing_token() const noexcept { return entry_->fencing_token(); }

namespace {

// Absolute, normal, and without a trailing slash ("locks/" is "locks").
std::filesystem::path lock_dir_path(const std::filesystem::path& spelled) {
  std::filesystem::path path = std::filesystem::absolute(spelled).lexically_normal();
  if (!path.has_filename() && path.has_relative_path()) path = path.parent_path();
  return path;
}

}  // namespace

LockManager::LockManager(const std::filesystem::path& lock_dir)
    : LockManager(lock_dir, LockOptions{}) {}

LockManager::LockManager(const std::filesystem::path& lock_dir, const LockOptions& options)
    : state_(std::make_shared<detail::ManagerState>(lock_dir_path(lock_dir), options)) {}

LockManager::LockManager(const ClusterOptions& cluster, std::string_view prefix,
                         const LockOptions& options)
    : state_(std::make_shared<detail::ManagerState>(cluster, std::string(prefix), options)) {}

const std::filesystem::path& LockManager::lock_dir() const noexcept { return state_->lock_dir(); }

LockHandle LockManager::acquire(std::string_view name, const AcquireOptions& options,
                                std::error_code& ec) const noexcept try {
  detail::Ticket ticket = detail::open_ticket(state_, name, options.mode, ec);
  if (ec) return {};
  detail::wait_for(ticket, options.timeout, options.mode, ec);
  if (ec) return {};
  return detail::keep_as_handle(*state_, std::move(ticket));
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return {};
}

LockHandle LockManager::acquire(std::string_view name, const AcquireOptions& options) const {
  std::error_code ec;
  LockHandle handle = acquire(name, options, ec);
  if (ec) throw detail::named_error(*state_, name, ec);
  return handle;
}

std::optional<LockHandle> LockManager::try_acquire(std::string_view name, Mode mode,
                                                   std::error_code& ec) const noexcept try {
  RequestOptions options;
  options.mode = mode;
  options.if_available = true;
  detail::Ticket ticket = detail::begin_request(state_, name, options, ec);
  if (ec || !ticket.lock()) return std::nullopt;
  return detail::keep_as_handle(*state_, std::move(ticket));
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return std::nullopt;
}

std::optional<LockHandle> LockManager::try_acquire(std::string_view name, Mode mode) const {
  std::error_code ec;
  std::optional<LockHandle> handle = try_acquire(name, mode, ec);
  if (ec) throw detail::named_error(*state_, name, ec);
  return handle;
}

void LockManager::release(const LockHandle& handle, std::error_code& ec) const noexcept {
  detail::Ticket ticket = state_->give_back(handle);
  ec = ticket ? ticket.release() : std::error_code(errc::not_held);
}

void LockManager::release(const LockHandle& handle) const {
  std::error_code ec;
  release(handle, ec);
  if (ec) throw detail::named_error(*state_, handle.name, ec);
}

bool LockManager::is_locked(std::string_view name, std::error_code& ec) const noexcept try {
  ec = detail::check_lock_name(name);
  if (ec) return false;
  if (state_->over_cluster()) {
    const detail::ClusterTarget cluster = state_->cluster_target(name, ec);
    return !ec && !cluster.lock.observe(ec).holders.empty() && !ec;
  }
  const PackObservation seen =
      observe(detail::pack_of(*state_, name), ec, state_->options().sidecar_name);
  // No pack, no lock; and nothing is created to find that out.
  if (ec == std::errc::no_such_file_or_directory) ec.clear();
  return !ec && !seen.holders.empty();
} catch (const std::bad_alloc&) {
  ec = std::make_error_code(std::errc::not_enough_memory);
  return false;
}

bool LockManager::is_locked(std::string_view name) const {
  std::error_code ec;
  const bool locked = is_locked(name, ec);
  if (ec) throw detail::named_error(*state_, name, ec);
  return locked;
}

}  // namespace packlock
