#pragma once
// One non-blocking attempt at the kernel lock of a sidecar, with the
// ghost-lock guard.

#include <system_error>

#include <packlock/mode.hpp>

#include "pack.hpp"
#include "sidecar.hpp"

namespace packlock::detail {

enum class Attempt { locked, busy, failed };

// flock(LOCK_NB) on `sidecar`. After flock succeeds the descriptor and the
// path must name the same inode; if someone unlinked or replaced the file in
// between, the lock is on a ghost: it is dropped, the sidecar reopened and
// the attempt made again on what the path names now. `sidecar` may therefore
// name another inode on return. `failed` sets `ec`.
Attempt attempt_kernel_lock(const Pack& pack, Sidecar& sidecar, Mode mode,
                            std::error_code& ec) noexcept;

}  // namespace packlock::detail
