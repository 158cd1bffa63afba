// The asynchronous acquire: the same queue, attempt and release watch as the
// blocking acquire, driven by Asio instead of a blocked thread.
//
// Thread-safety: every member is guarded by mutex_. The operation's handlers
// run on its executor (possibly several threads), cancellation arrives on
// any thread, and the queue calls turn_came() under its own mutex (so
// turn_came() only posts, and the lock order is mutex_ -> queue mutex).

#include <packlock/pack_lock.hpp>

#include <unistd.h>

#include <asio/cancellation_type.hpp>
#include <asio/error.hpp>
#include <asio/execution/context.hpp>
#include <asio/query.hpp>
#include <asio/post.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include "hold.hpp"
#include "kernel_lock.hpp"
#include "pack.hpp"
#include "release_watch.hpp"
#include "stale.hpp"
#include "waiter_registry.hpp"

namespace packlock::detail {

class AsyncAcquire;

// Asio reports OS errors in a category of its own ("asio.system") that
// does not compare equal to std::errc; packlock reports them as errno in
// std::system_category, as everywhere else.
std::error_code as_os_error(const std::error_code& ec) {
  if (ec.category() == asio::error::get_system_category()) {
    return {ec.value(), std::system_category()};
  }
  return ec;
}

// Ends, without running their handlers, the operations still pending when
// their execution context shuts down (an io_context destroyed mid-wait):
// otherwise a queued operation would keep its place at the head of the
// pack's in-process queue, and its descriptors, for ever.
class AsyncAcquireService final : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;

  explicit AsyncAcquireService(asio::execution_context& context)
      : asio::execution_context::service(context) {}

  void add(const std::shared_ptr<AsyncAcquire>& operation) {
    std::lock_guard lock(mutex_);
    operations_.push_back(operation);
  }
  void remove(const AsyncAcquire* operation) {
    std::lock_guard lock(mutex_);
    std::erase_if(operations_, [&](const auto& weak) {
      const auto alive = weak.lock();
      return !alive || alive.get() == operation;
    });
  }

 private:
  void shutdown() override;

  std::mutex mutex_;
  std::vector<std::weak_ptr<AsyncAcquire>> operations_;
};

asio::execution_context::id AsyncAcquireService::id;

class AsyncAcquire final : public Waiter, public std::enable_shared_from_this<AsyncAcquire> {
 public:
  AsyncAcquire(std::shared_ptr<const Pack> pack, asio::any_io_executor executor, Mode mode,
               Deadline deadline, AsyncCompletion completion)
      : Waiter(mode, kNoThread),
        pack_(std::move(pack)),
        executor_(std::move(executor)),
        deadline_(deadline),
        completion_(std::move(completion)),
        watch_(Backoff{}, pack_ ? &pack_->wake() : nullptr) {}

  void start() {
    std::lock_guard lock(mutex_);
    // Cancelled from another thread between the slot's connection and now.
    if (state_ == State::done) return;
    if (!pack_) {
      finish(errc::not_open, nullptr);
      return;
    }
    // The first timer of a context makes its reactor, which needs
    // descriptors: with none left, complete with the error, do not throw.
    try {
      backoff_timer_.emplace(executor_);
      deadline_timer_.emplace(executor_);
    } catch (const std::system_error& e) {
      finish(as_os_error(e.code()), nullptr);
      return;
    }
    keep_alive_ = shared_from_this();
    service_ = &asio::use_service<AsyncAcquireService>(
        asio::query(executor_, asio::execution::context));
    service_->add(keep_alive_);
    if (deadline_) {
      deadline_timer_->expires_at(*deadline_);
      deadline_timer_->async_wait([self = shared_from_this()](std::error_code ec) {
        if (!ec) self->stop(errc::timeout);
      });
    }
    switch (pack_->queue().admit(*this, /*may_wait=*/true)) {
      case PackQueue::Admission::proceed:
        state_ = State::contending;
        post_contend();
        break;
      case PackQueue::Admission::queued:
        registration_ = WaiterRegistration(*pack_, mode(), WakeBy::wake_channel);
        break;
      case PackQueue::Admission::reentry:  // not tied to a thread: never
      case PackQueue::Admission::busy:     // may_wait: never
        break;
    }
  }

  // The context shuts down: leave the queue, drop the handler uncalled.
  void abandon() {
    std::lock_guard lock(mutex_);
    if (state_ == State::done) return;
    pack_->queue().withdraw(*this);
    end_waiting();
    completion_ = nullptr;
    keep_alive_.reset();
  }

  // Any cancellation type ends the wait: waiting has no side effects.
  void cancel(asio::cancellation_type type) {
    if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                 asio::cancellation_type::total)) != asio::cancellation_type::none) {
      stop(errc::cancelled);
    }
  }

 private:
  enum class State { queued, contending, done };

  void turn_came() noexcept override { post_contend(); }

  void post_contend() {
    asio::post(executor_, [self = shared_from_this()] {
      std::lock_guard lock(self->mutex_);
      self->contend();
    });
  }

  void stop(errc reason) {
    std::lock_guard lock(mutex_);
    if (state_ != State::done) finish(reason, nullptr);
  }

  // One attempt at the kernel lock; on busy, wait for a release event or
  // the back-off step, whichever comes first.
  void contend() {
    if (state_ == State::done) return;
    state_ = State::contending;
    std::error_code ec;
    if (sidecar_.fd && sidecar_.epoch != descriptor_epoch()) sidecar_.fd.reset();  // forked
    if (!sidecar_.fd) {
      sidecar_ = pack_->take_sidecar(ec);
      if (ec) return finish(ec, nullptr);
    }
    switch (attempt_kernel_lock(*pack_, sidecar_, mode(), ec)) {
      case Attempt::locked:
        return finish({}, std::move(sidecar_));
      case Attempt::failed:
        return finish(ec, nullptr);
      case Attempt::busy:
        break;
    }
    // A cancelled operation is done before it gets here: no recovery then.
    if (!recovery_) recovery_.emplace(*pack_);
    switch (recovery_->after_busy(sidecar_, mode())) {
      case Recovery::locked:
        return finish({}, std::move(sidecar_));
      case Recovery::retry:
        sidecar_ = pack_->open_sidecar(ec);
        if (ec) return finish(ec, nullptr);
        return contend();
      case Recovery::none:
        break;
    }
    // As in the blocking acquire: a waiter just counted, or events drained
    // now, may have missed a release that came after the attempt; try
    // again before waiting.
    bool newly_counted = false;
    if (!registration_.active()) {
      registration_ = WaiterRegistration(*pack_, mode(), WakeBy::wake_channel);
      newly_counted = registration_.counted();
    }
    const bool missed_events = watch_.consume_events() || newly_counted;
    if (!pack_->path_names(sidecar_)) {
      // The sidecar was replaced: follow the path at once.
      sidecar_.fd.reset();
      return contend();
    }
    // As in the blocking acquire: a new watch missed what came before it.
    const bool newly_watched = watch_.watch(sidecar_);
    if (missed_events || newly_watched) return post_contend();
    wait_for_release();
  }

  void wait_for_release() {
    const unsigned round = ++round_;
    auto wake = [self = shared_from_this(), round] {
      std::lock_guard lock(self->mutex_);
      if (self->state_ == State::done || round != self->round_) return;
      ++self->round_;  // the other waits of this round are now stale
      self->cancel_waits();
      self->contend();
    };
    wait_readable(events_, watch_.native_handle(), wake);
    wait_readable(wake_events_, watch_.wake_handle(), wake);
    backoff_timer_->expires_after(watch_.next_delay());
    backoff_timer_->async_wait([wake](std::error_code) { wake(); });
  }

  // Waits until `fd` is readable through `stream`, which owns a duplicate
  // of it (the watch keeps its own); nothing to wait for when fd is -1, or
  // when no descriptor is left to duplicate it or the reactor refuses it:
  // the back-off timer still wakes.
  template <typename Wake>
  void wait_readable(std::optional<asio::posix::stream_descriptor>& stream, int fd, Wake wake) {
    if (fd < 0) return;
    if (!stream) {
      if (const int copy = ::dup(fd); copy >= 0) {
        try {
          stream.emplace(executor_, copy);
        } catch (const std::system_error&) {
          ::close(copy);
        }
      }
    }
    if (stream) {
      stream->async_wait(asio::posix::stream_descriptor::wait_read,
                         [wake](std::error_code) { wake(); });
    }
  }

  void cancel_waits() {
    if (backoff_timer_) backoff_timer_->cancel();
    if (events_) events_->cancel();
    if (wake_events_) wake_events_->cancel();
  }

  void finish(std::error_code ec, Sidecar&& locked) {
    std::unique_ptr<Hold> hold;
    if (locked.fd) {
      pack_->queue().granted(*this);
      hold = std::make_unique<Hold>(pack_, std::move(locked), mode(), thread());
    } else if (state_ != State::done && pack_) {
      pack_->queue().withdraw(*this);
    }
    end_waiting();
    // Posted, so the handler never runs inside the initiating call or under
    // mutex_.
    asio::post(executor_, [completion = std::move(completion_), ec,
                           hold = PackLockHold(std::move(hold))]() mutable {
      completion(ec, std::move(hold));
    });
    if (service_) service_->remove(this);
    keep_alive_.reset();
  }

  void finish(std::error_code ec, std::nullptr_t) { finish(ec, Sidecar{}); }

  // Whatever the outcome: no more waits, the unlocked descriptor back to the
  // pack, invisible as a waiter.
  void end_waiting() {
    state_ = State::done;
    registration_.reset();
    if (sidecar_.fd) pack_->keep_sidecar(std::move(sidecar_));
    sidecar_.fd.reset();
    cancel_waits();
    if (deadline_timer_) deadline_timer_->cancel();
  }

  std::mutex mutex_;
  State state_ = State::queued;
  std::shared_ptr<const Pack> pack_;
  asio::any_io_executor executor_;
  Deadline deadline_;
  AsyncCompletion completion_;
  Sidecar sidecar_;
  ReleaseWatch watch_;
  std::optional<StaleRecovery> recovery_;
  WaiterRegistration registration_;
  std::optional<asio::posix::stream_descriptor> events_;       // inotify
  std::optional<asio::posix::stream_descriptor> wake_events_;  // wake channel
  std::optional<asio::steady_timer> backoff_timer_;  // made by start()
  std::optional<asio::steady_timer> deadline_timer_;
  unsigned round_ = 0;
  AsyncAcquireService* service_ = nullptr;
  // The queue holds a plain pointer to this waiter: keep it alive until done.
  std::shared_ptr<AsyncAcquire> keep_alive_;
};

void AsyncAcquireService::shutdown() {
  std::vector<std::weak_ptr<AsyncAcquire>> pending;
  {
    std::lock_guard lock(mutex_);
    pending.swap(operations_);
  }
  for (const auto& weak : pending) {
    if (const auto operation = weak.lock()) operation->abandon();
  }
}

std::shared_ptr<AsyncAcquire> make_async_acquire(std::shared_ptr<const Pack> pack,
                                                 asio::any_io_executor executor, Mode mode,
                                                 Deadline deadline, AsyncCompletion completion) {
  return std::make_shared<AsyncAcquire>(std::move(pack), std::move(executor), mode, deadline,
                                        std::move(completion));
}

void start_async_acquire(const std::shared_ptr<AsyncAcquire>& operation) { operation->start(); }

void cancel_async_acquire(const std::weak_ptr<AsyncAcquire>& operation,
                          asio::cancellation_type type) noexcept {
  if (const auto alive = operation.lock()) alive->cancel(type);
}

}  // namespace packlock::detail
