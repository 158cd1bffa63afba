// LockManager::query(): this process's requests from its own bookkeeping,
// other processes' from the kernel's lock table.

#include <packlock/lock_manager.hpp>

#include <unistd.h>

#include <packlock/observe.hpp>

#include "lock_name.hpp"
#include "manager_state.hpp"
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

// Every request of this process for a lock below `lock_dir` (canonical),
// whichever manager made it, named as this manager names it.
void add_own_requests(const fs::path& lock_dir, const std::string& sidecar_name,
                      LockManagerSnapshot& snapshot) {
  const pid_t self = ::getpid();
  for (const auto& entry : detail::RequestRegistry::instance().snapshot()) {
    if (entry->lost()) continue;  // stolen: it holds nothing, though its callback may run on
    std::string name = entry->pack()->path().lexically_relative(lock_dir).generic_string();
    if (!detail::is_lock_name(name)) continue;  // a lock of another directory
    if (entry->pack()->sidecar_name() != sidecar_name) continue;  // another lock of the pack
    LockInfo info{std::move(name), entry->mode(), format_client_id(self, entry->client()), self};
    (entry->granted() ? snapshot.held : snapshot.pending).push_back(std::move(info));
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
      if (party.pid != self) to.push_back({name, party.mode, std::to_string(party.pid), party.pid});
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
  const fs::path lock_dir = fs::canonical(state_->lock_dir(), ec);
  if (ec == std::errc::no_such_file_or_directory) ec.clear();
  if (ec || lock_dir.empty()) return snapshot;
  add_own_requests(lock_dir, state_->options().sidecar_name, snapshot);
  add_other_processes_below(lock_dir, state_->options().sidecar_name, snapshot, ec);
  return snapshot;
}

LockManagerSnapshot LockManager::query() const {
  std::error_code ec;
  LockManagerSnapshot snapshot = query(ec);
  if (ec) throw Error(ec, "query", state_->lock_dir());
  return snapshot;
}

}  // namespace packlock
