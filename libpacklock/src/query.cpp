// LockManager::query(): this process's requests from its own bookkeeping,
// other processes' from the kernel's lock table, or over etcd from the
// cluster locks' keys.

#include <packlock/lock_manager.hpp>

#include <unistd.h>

#include <packlock/observe.hpp>

#include "lock_name.hpp"
#include "manager_state.hpp"
#include "owner_record.hpp"
#include "request_registry.hpp"

namespace packlock {
namespace {

namespace fs = std::filesystem;

std::string format_client_id(pid_t pid, std::uint64_t client) {
  return std::to_string(pid) + '/' + std::to_string(client);
}

// Errors that mean "no lock here": the pack went away while we looked, it
// is not ours to read, or its sidecar is not a regular file.
bool not_a_lock_here(const std::error_code& ec) noexcept {
  return ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory ||
         ec == std::errc::permission_denied || ec == errc::not_a_regular_file;
}

std::chrono::nanoseconds time_since(std::chrono::system_clock::time_point then) {
  return std::max(std::chrono::nanoseconds(0), std::chrono::system_clock::now() - then);
}

// The name this manager gives the lock of a request of this process, or
// "" when the lock is none of its locks.
std::string own_name(const detail::ManagerState& state, const detail::RequestEntry& entry,
                     const fs::path& lock_dir) {
  if (const detail::ClusterTarget* cluster = entry.cluster()) {
    const std::string& full = cluster->lock.name();
    if (!state.over_cluster() || cluster->cluster != state.cluster_id() ||
        !full.starts_with(state.prefix())) {
      return "";
    }
    return full.substr(state.prefix().size());
  }
  if (state.over_cluster()) return "";
  // Another lock of the same pack is not this manager's.
  if (entry.pack()->sidecar_name() != state.options().sidecar_name) return "";
  return entry.pack()->path().lexically_relative(lock_dir).generic_string();
}

// Every request of this process for a lock of this manager (below
// `lock_dir`, canonical, or below its prefix on its cluster), whichever
// manager made it, named as this manager names it.
void add_own_requests(const detail::ManagerState& state, const fs::path& lock_dir,
                      LockManagerSnapshot& snapshot) {
  const auto facts = detail::process_facts();
  // As the records of its holds say it (LockOptions::command, record_command).
  const std::string command = detail::record_of_this_process(state.options()).command;
  for (const auto& entry : detail::RequestRegistry::instance().snapshot()) {
    if (entry->lost()) continue;  // stolen: it holds nothing, though its callback may run on
    std::string name = own_name(state, *entry, lock_dir);
    if (!detail::is_lock_name(name)) continue;
    LockInfo info{.name = std::move(name),
                  .mode = entry->mode(),
                  .client_id = format_client_id(facts->pid, entry->client()),
                  .pid = facts->pid};
    info.host = facts->host;
    info.command = command;
    info.held_for = time_since(entry->since());
    info.fencing_token = entry->fencing_token();
    (entry->granted() ? snapshot.held : snapshot.pending).push_back(std::move(info));
  }
}

bool is_this_process(const OwnerRecord& record, const detail::ProcessFacts& facts) {
  return record.pid == facts.pid && record.host == facts.host && record.boot_id == facts.boot_id &&
         record.pid_namespace == facts.pid_namespace && record.start_time == facts.start_time;
}

LockInfo info_of(std::string name, const ClusterParty& party) {
  LockInfo info{.name = std::move(name), .mode = party.mode, .client_id = party.key};
  info.fencing_token = party.fencing_token;
  if (const auto& record = party.owner) {
    info.client_id = std::to_string(record->pid) + '@' + record->host;
    info.pid = record->pid;
    info.host = record->host;
    info.command = record->command;
    info.held_for = time_since(record->acquired_at);
  }
  return info;
}

// Every other party of the manager's cluster locks, on any host, as their
// keys say.
void add_other_parties(detail::ManagerState& state, LockManagerSnapshot& snapshot,
                       std::error_code& ec) {
  const ClusterLock connection = state.connection(ec);
  if (ec) return;
  const auto views = observe_cluster(connection, state.prefix(), ec);
  const auto facts = detail::process_facts();
  const auto add = [&](const std::string& name, const std::vector<ClusterParty>& parties,
                       std::vector<LockInfo>& to) {
    for (const ClusterParty& party : parties) {
      // This process's own are in its bookkeeping, exactly.
      if (!party.owner || !is_this_process(*party.owner, *facts)) to.push_back(info_of(name, party));
    }
  };
  for (const ClusterLockView& view : views) {
    // The range of the prefix "jobs/" holds the keys of the lock "jobs" too.
    if (!view.name.starts_with(state.prefix())) continue;
    const std::string name = view.name.substr(state.prefix().size());
    if (!detail::is_lock_name(name)) continue;
    add(name, view.holders, snapshot.held);
    add(name, view.waiters, snapshot.pending);
  }
}

void add_other_processes(const fs::path& pack, const std::string& name,
                         const std::string& sidecar_name, LockManagerSnapshot& snapshot,
                         std::error_code& ec) {
  const PackObservation seen = observe(pack, ec, sidecar_name);
  if (not_a_lock_here(ec)) ec.clear();
  if (ec || !seen.sidecar_exists) return;
  const pid_t self = ::getpid();
  const auto add = [&](const std::vector<LockParty>& parties, std::vector<LockInfo>& to) {
    for (const LockParty& party : parties) {
      // This process's own are in its bookkeeping, exactly.
      if (party.pid != self) {
        to.push_back({.name = name,
                      .mode = party.mode,
                      .client_id = std::to_string(party.pid),
                      .pid = party.pid});
      }
    }
  };
  add(seen.holders, snapshot.held);
  add(seen.waiters, snapshot.pending);
}

// Every directory below `lock_dir` whose path is a lock name. A component
// that is no lock name (a dot file, the sidecar's companions) is not
// entered: nothing below it is a lock name either.
void add_other_processes_below(const fs::path& lock_dir, const std::string& sidecar_name,
                               LockManagerSnapshot& snapshot, std::error_code& ec) {
  fs::recursive_directory_iterator it(lock_dir, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_directory(type_ec)) continue;
    const std::string name = it->path().lexically_relative(lock_dir).generic_string();
    if (!detail::is_lock_name(name)) {
      it.disable_recursion_pending();
      continue;
    }
    add_other_processes(it->path(), name, sidecar_name, snapshot, ec);
  }
}

}  // namespace

std::string LockManager::client_id() const {
  return format_client_id(::getpid(), state_->client());
}

LockManagerSnapshot LockManager::query(std::error_code& ec) const {
  LockManagerSnapshot snapshot;
  if (state_->over_cluster()) {
    add_own_requests(*state_, {}, snapshot);
    add_other_parties(*state_, snapshot, ec);
    return snapshot;
  }
  const fs::path lock_dir = fs::canonical(state_->lock_dir(), ec);
  if (ec == std::errc::no_such_file_or_directory) ec.clear();
  if (ec || lock_dir.empty()) return snapshot;
  add_own_requests(*state_, lock_dir, snapshot);
  add_other_processes_below(lock_dir, state_->options().sidecar_name, snapshot, ec);
  return snapshot;
}

LockManagerSnapshot LockManager::query() const {
  std::error_code ec;
  LockManagerSnapshot snapshot = query(ec);
  if (ec && state_->over_cluster()) throw Error(ec, "query", state_->prefix());
  if (ec) throw Error(ec, "query", state_->lock_dir());
  return snapshot;
}

}  // namespace packlock
