#pragma once
// The engine's synchronous entry points: every face that takes a lock
// without an event loop comes through here. noexcept; errors go to `ec`.

#include <functional>
#include <memory>
#include <system_error>

#include <packlock/mode.hpp>

#include "cancellation.hpp"
#include "hold.hpp"
#include "kernel_wait.hpp"
#include "pack.hpp"

namespace packlock::detail {

// Never waits: errc::busy when another process, another holder in this
// process, a queued waiter, or the holding thread itself is in the way.
// `thread` holds the lock for the re-entry check (kNoThread: not tied to
// a thread, as for asynchronous requests). A busy lock that is stale, where
// the pack's policy allows, is recovered and attempted once more.
std::unique_ptr<Hold> try_acquire(const std::shared_ptr<const Pack>& pack, Mode mode,
                                  std::error_code& ec,
                                  ThreadToken thread = this_thread_token()) noexcept;

// A steal. Never waits for the lock: enters this process's queue for the
// pack ahead of every waiter whose turn has not come, calls
// `clear_the_way` (which must not throw, and releases the holds of this
// process that are to give way), then takes the kernel lock, robbing a
// holder of another process who will be told (steal.hpp). errc::busy when
// the lock stays held (a holder in this process that `clear_the_way` left
// alone, or one elsewhere who would not be told), or on re-entry; the
// waiter has then left the queue. The steal itself is the contention's
// (contention.hpp).
std::unique_ptr<Hold> acquire_ahead(const std::shared_ptr<const Pack>& pack, Mode mode,
                                    ThreadToken thread, const std::function<void()>& clear_the_way,
                                    std::error_code& ec) noexcept;

// Waits in FIFO order behind this process's other waiters, then in the
// kernel (contention.hpp: recovering the lock when it turns stale, as the
// pack's policy allows), until `deadline` (none: forever) or `cancel`. errc::busy at once
// on re-entry by a thread that holds the pack; errc::timeout at the
// deadline; errc::cancelled once `cancel` is cancelled, and then no stale
// lock is recovered (Go parity). The first attempt is made even when
// `cancel` already is.
std::unique_ptr<Hold> acquire(const std::shared_ptr<const Pack>& pack, Mode mode,
                              const Deadline& deadline, std::error_code& ec,
                              Cancellation* cancel = nullptr) noexcept;

}  // namespace packlock::detail
