#pragma once
// What a fork(2) leaves behind in the child, and how the library copes.
//
// A child of a multi-threaded process starts with one thread and a copy of
// everything else: descriptors shared with the parent, the parent's
// in-process tables, and each mutex exactly as it was at that instant,
// possibly held by a thread the child does not have. The contract (see
// libpacklock(3)): in a child, a hold taken before the fork can only be
// released, which closes the child's copy; a pack opened before the fork is
// reopened at its first use (Pack::for_this_process), so the child never
// touches a parent's object that a mutex guards. The few process-wide
// mutexes (the lock table, the heartbeat registry, the process facts, the
// named-lock registry, the wait signal's installation) have pthread_atfork
// handlers, so the child finds them free.

namespace packlock::detail {

// Counts the forks that led to this process. A child's copy of the lock
// table describes its parent's threads, and a hold taken before the fork is
// only closed in the child.
unsigned fork_generation() noexcept;

// Counts every fork, in the parent as in the child. A descriptor opened in
// an earlier epoch is an open file description shared with another process:
// flock(2) would take the two processes for one holder, so it is never
// reused for a new acquisition (see Pack::take_sidecar).
unsigned descriptor_epoch() noexcept;

}  // namespace packlock::detail
