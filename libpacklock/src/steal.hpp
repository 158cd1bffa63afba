#pragma once
// Steal across processes: the holder of another process is robbed through
// the hijack path. The stealer unlinks the busy sidecar, with the guarded
// unlink stale recovery uses (stale.hpp), and locks the fresh one; the
// robbed holder's heartbeat service sees its path name another inode
// (inotify at once on this host, its next beat at the latest) and reports
// the hold lost.
//
// Only a holder that will be told is robbed: one whose owner record names
// a process of this host (same boot, same pid namespace) that holds the
// lock as the kernel's table shows, i.e. an exclusive packlock hold, which
// heartbeats and watches its sidecar. A flock(1) holder, shared holders (no
// record), a holder on another host of a network filesystem and a record
// left by a process that let go since would not learn of it, so a steal
// they stand in the way of stays errc::busy: never two holders who both
// believe they hold without one being told.

#include <system_error>

#include <packlock/mode.hpp>

#include "pack.hpp"
#include "sidecar.hpp"

namespace packlock::detail {

// How many new sidecars a steal opens, after unlinking a busy one or
// finding it replaced: other processes may win each before we attempt it,
// one after another; past this many the lock is left to them.
inline constexpr int kStealRounds = 4;

// One non-blocking attempt on the pack's sidecar that, while the lock is
// busy with a holder who will be told, unlinks it and attempts on the new
// one. Returns the locked sidecar; errc::busy when the lock stays held (by
// a holder who would not be told, or by other processes that took each new
// sidecar first a few times over), or another error.
Sidecar seize_sidecar(const Pack& pack, Mode mode, std::error_code& ec) noexcept;

}  // namespace packlock::detail
