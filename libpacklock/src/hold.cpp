#include "hold.hpp"

#include <sched.h>
#include <sys/file.h>

#include <cerrno>

#include <atomic>

namespace packlock::detail {

Hold::Hold(std::shared_ptr<const Pack> pack, Sidecar sidecar, Mode mode,
           ThreadToken thread) noexcept
    : pack_(std::move(pack)),
      sidecar_(std::move(sidecar)),
      mode_(mode),
      thread_(thread),
      acquired_at_(std::chrono::system_clock::now()),
      fork_generation_(fork_generation()),
      heartbeat_(pack_->heartbeat()) {
  announce();
  if (heartbeat_) heartbeat_->add(heartbeat_entry_, *pack_, sidecar_, sidecar_.writable);
}

void Hold::announce() noexcept {
  if (!sidecar_.writable) {
    pack_->log(LogEventKind::read_only,
               [] { return std::string("holding through a read-only descriptor: no owner record, no heartbeat"); },
               {});
  } else if (mode_ == Mode::exclusive) {
    if (const int err = write_record()) {
      pack_->log(LogEventKind::record_failed,
                 [] { return std::string("could not write the owner record"); },
                 {err, std::system_category()});
    }
  } else if (mtime_still_fresh()) {
    // Nothing to write: a shared hold has no record.
  } else if (const int err = refresh_mtime(sidecar_.fd.get())) {
    pack_->log(LogEventKind::refresh_failed,
               [] { return std::string("could not refresh the sidecar's mtime"); },
               {err, std::system_category()});
  }
}

// See the header: pwrite(2) refreshes the mtime as well, the mapped page
// does not.
int Hold::write_record() noexcept {
  OwnerRecordWriter::Block block;
  const std::size_t size = pack_->record_writer().render(block, acquired_at_);
  if (size == 0) return ENOMEM;
  const std::string_view record(block.data(), size);
  if (mtime_still_fresh()) {
    if (!sidecar_.page.made_for(sidecar_.dev, sidecar_.ino)) {
      sidecar_.page = RecordPage::map(sidecar_.fd.get(), sidecar_.dev, sidecar_.ino);
    }
    if (sidecar_.page.store(record, sidecar_.seen.size)) return 0;
  }
  return OwnerRecordWriter::write(sidecar_.fd.get(), record);
}

bool Hold::mtime_still_fresh() const noexcept {
  if (pack_->network() || sidecar_.seen.size < 0) return false;
  const auto& options = pack_->options();
  const auto age = acquired_at_ - sidecar_.seen.mtime;
  // A future mtime is "skewed", not fresh (SPEC section 1).
  return age >= std::chrono::system_clock::duration::zero() &&
         age <= (options.stale_after - options.heartbeat) / 2;
}

void Hold::on_lost(std::function<void()> callback) {
  // In a forked child the entry is the parent's: its callback never fires.
  if (fork_generation_ != fork_generation()) return;
  heartbeat_entry_.on_lost(std::move(callback));
}

// Blocking waiters sleep on the release word, asynchronous ones poll the
// wake channel, written only when one of them is counted (see
// waiter_registry.hpp). A waiter woken on this CPU may still wait until the
// releaser blocks or its slice ends (a pipe's wake-up even tells the
// scheduler the writer is about to sleep); yielding once lets it run now,
// and costs one system call when the waiter is on another CPU. The price:
// a releaser that shares its CPU with the waiter it woke resumes after the
// waiter blocks or uses its slice. Measured figures: README, Benchmarks.
void Hold::hand_over() const noexcept {
  const WaitingCount* const count = pack_->waiting_count();
  if (count) count->released();
  if (!count || count->anyone_listening()) pack_->wake().notify();
  ::sched_yield();
}

std::error_code Hold::release() noexcept {
  if (!sidecar_.fd) return release_result_;
  if (fork_generation_ != fork_generation()) {
    // A child forked while the hold existed shares the lock's open file
    // description: LOCK_UN here would drop the parent's lock. Closing the
    // child's copy leaves it alone.
    if (const int err = sidecar_.fd.reset()) release_result_.assign(err, std::system_category());
    return release_result_;
  }
  // The heartbeat stops touching the descriptor before it is unlocked.
  if (heartbeat_) heartbeat_->remove(heartbeat_entry_);
  // A descriptor that predates a fork is shared with the child: unlocking
  // releases (this process acquired), but it is not kept for reuse.
  const bool unlocked = ::flock(sidecar_.fd.get(), LOCK_UN) == 0;
  if (unlocked) {
    // Wake other processes' waiters first: every step between the unlock
    // and this write is handoff latency. Nobody counted: no waiter to wake.
    if (pack_->anyone_waiting()) hand_over();
    pack_->keep_sidecar(std::move(sidecar_));
  } else {
    release_result_.assign(errno, std::system_category());
  }
  // Closes what keep_sidecar declined; after a failed LOCK_UN, closing is
  // what releases the lock.
  if (const int err = sidecar_.fd.reset(); err && !release_result_) {
    release_result_.assign(err, std::system_category());
  }
  if (!unlocked) hand_over();
  pack_->queue().released(mode_, thread_);
  return release_result_;
}

}  // namespace packlock::detail
