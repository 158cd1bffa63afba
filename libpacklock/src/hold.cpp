#include "hold.hpp"

#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "fork.hpp"

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

// One pwrite(2), which refreshes the mtime as well.
int Hold::write_record() noexcept {
  OwnerRecordWriter::Block block;
  const std::size_t size = pack_->record_writer().render(block, acquired_at_);
  if (size == 0) return ENOMEM;
  const int err = OwnerRecordWriter::write(sidecar_.fd.get(), std::string_view(block.data(), size));
  // A short write left part of a record: clear that part too.
  record_size_ = err == 0 || err == EIO ? size : 0;
  if (record_size_ != 0 && pack_->network()) {
    try {
      written_record_.assign(block.data(), size);
    } catch (const std::bad_alloc&) {
      record_size_ = 0;  // cannot tell our record from another host's: leave it
    }
  }
  return err;
}

// On a local filesystem the kernel's lock makes the bytes ours until
// LOCK_UN. On a network filesystem a lock can be lost unnoticed (the
// server's lease ran out), and another host's holder may have written its
// record since: the blanks then only go over a record that is still ours.
bool Hold::record_still_ours() const noexcept {
  if (!pack_->network()) return true;
  std::string now(written_record_.size(), '\0');
  const ssize_t n = ::pread(sidecar_.fd.get(), now.data(), now.size(), 0);
  return n == static_cast<ssize_t>(now.size()) && now == written_record_;
}

void Hold::clear_record() noexcept {
  if (record_size_ == 0) return;
  const std::size_t size = std::exchange(record_size_, 0);
  if (!record_still_ours()) return;
  if (const int err = OwnerRecordWriter::clear(sidecar_.fd.get(), size)) {
    pack_->log(LogEventKind::record_failed,
               [] { return std::string("could not clear the owner record at release"); },
               {err, std::system_category()});
  }
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
  clear_record();
  // A descriptor that predates a fork is shared with the child: unlocking
  // releases (this process acquired), but it is not kept for reuse.
  // The kernel wakes the waiters blocked in flock(2), of every process.
  if (::flock(sidecar_.fd.get(), LOCK_UN) == 0) {
    pack_->keep_sidecar(std::move(sidecar_));
  } else {
    release_result_.assign(errno, std::system_category());
  }
  // Closes what keep_sidecar declined; after a failed LOCK_UN, closing is
  // what releases the lock.
  if (const int err = sidecar_.fd.reset(); err && !release_result_) {
    release_result_.assign(err, std::system_category());
  }
  pack_->queue().released(mode_, thread_);
  return release_result_;
}

}  // namespace packlock::detail
