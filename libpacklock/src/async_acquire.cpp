// The asynchronous acquire: the same in-process queue as the blocking
// acquire; once an operation's turn comes, the pack's wait thread
// (wait_thread.hpp) runs the contention (contention.hpp) for it, blocked in
// flock(2), and the operation completes on its executor.
//
// Thread-safety: every member is guarded by mutex_. The operation's handlers
// run on its executor (possibly several threads), cancellation arrives on
// any thread, the wait thread contends, and the queue calls turn_came()
// under its own mutex (so turn_came() only hands over, and the lock order
// is mutex_ -> queue mutex -> wait thread mutex).

#include <packlock/pack_lock.hpp>

#include <condition_variable>

#include <asio/cancellation_type.hpp>
#include <asio/error.hpp>
#include <asio/execution/context.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/query.hpp>
#include <asio/steady_timer.hpp>

#include "abandon_service.hpp"
#include "cancellation.hpp"
#include "contention.hpp"
#include "hold.hpp"
#include "pack.hpp"
#include "wait_thread.hpp"

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

using AsyncAcquireService = AbandonService<AsyncAcquire>;

class AsyncAcquire final : public AsyncWaiter, public std::enable_shared_from_this<AsyncAcquire> {
 public:
  AsyncAcquire(std::shared_ptr<const Pack> pack, asio::any_io_executor executor, Mode mode,
               Deadline deadline, AsyncCompletion completion)
      : AsyncWaiter(mode, kNoThread),
        pack_(std::move(pack)),
        executor_(std::move(executor)),
        deadline_(deadline),
        completion_(std::move(completion)) {}

  void start() {
    std::lock_guard lock(mutex_);
    // Cancelled from another thread between the slot's connection and now.
    if (state_ == State::done) return;
    if (!pack_) return finish(errc::not_open, {});
    std::error_code ec;
    pack_ = Pack::for_this_process(pack_, ec);
    if (ec) return finish(ec, {});
    // The first timer of a context makes its reactor, which needs
    // descriptors: with none left, complete with the error, do not throw.
    try {
      if (deadline_) deadline_timer_.emplace(executor_);
      wait_thread_ = pack_->queue().wait_thread();
      service_ = &asio::use_service<AsyncAcquireService>(
          asio::query(executor_, asio::execution::context));
      keep_alive_ = shared_from_this();
      service_->add(keep_alive_);
    } catch (const std::system_error& e) {
      return finish(as_os_error(e.code()), {});
    } catch (const std::bad_alloc&) {
      return finish(std::make_error_code(std::errc::not_enough_memory), {});
    }
    // The executor counts the operation as work while it waits on another
    // thread, so that its run() does not return before the completion.
    work_ = asio::prefer(executor_, asio::execution::outstanding_work.tracked);
    wait_thread_->joined();
    joined_ = true;
    if (deadline_) {
      deadline_timer_->expires_at(*deadline_);
      deadline_timer_->async_wait([self = shared_from_this()](std::error_code ec) {
        if (!ec) self->stop(errc::timeout);
      });
    }
    if (pack_->queue().admit(*this, /*may_wait=*/true) == PackQueue::Admission::proceed) {
      wait_thread_->turn_came(shared_from_this());
    }
  }

  // The context shuts down: leave the queue, drop the handler uncalled.
  // Returns once the wait thread has let go of the kernel, so the context
  // leaves nothing behind.
  void abandon() {
    std::unique_lock lock(mutex_);
    if (state_ == State::done) return;
    completion_ = nullptr;
    if (state_ == State::contending) {
      cancellation_.cancel();  // the wait thread finishes it
      finished_.wait(lock, [this] { return state_ == State::done; });
      return;
    }
    finish(errc::cancelled, {});
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

  // Under the queue's mutex: hand over, nothing more.
  void turn_came() noexcept override { wait_thread_->turn_came(shared_from_this()); }

  void no_wait_thread(std::error_code ec) noexcept override {
    try {
      asio::post(executor_, [self = shared_from_this(), ec] { self->stop(ec); });
    } catch (...) {
    }
  }

  // On the wait thread. The contention runs outside mutex_, so that a
  // cancellation can interrupt it.
  void contend_now() noexcept override {
    {
      std::lock_guard lock(mutex_);
      if (state_ != State::queued) return;
      state_ = State::contending;
    }
    ContendRequest request;
    request.mode = mode();
    request.cancel = &cancellation_;
    std::error_code ec;
    Sidecar sidecar = contend(*pack_, request, ec);
    std::lock_guard lock(mutex_);
    if (ec == errc::cancelled && stopped_by_) ec = stopped_by_;
    finish(ec, std::move(sidecar));
  }

  void stop(std::error_code reason) {
    std::lock_guard lock(mutex_);
    if (state_ == State::done) return;
    if (state_ == State::contending) {
      // The wait thread returns from the kernel and completes.
      if (!stopped_by_) stopped_by_ = reason;
      cancellation_.cancel();
      return;
    }
    finish(reason, {});
  }

  // Whatever the outcome: out of the queue (a holder or gone), no more
  // timers, the handler posted, so that it never runs inside the
  // initiating call or under mutex_.
  void finish(std::error_code ec, Sidecar&& locked) {
    std::unique_ptr<Hold> hold;
    if (locked.fd) {
      pack_->queue().granted(*this);
      hold = std::make_unique<Hold>(pack_, std::move(locked), mode(), thread());
    } else if (pack_ && joined_) {
      pack_->queue().withdraw(*this);
    }
    state_ = State::done;
    // Destroyed, not only cancelled: the last reference to the operation
    // may be dropped on the wait thread after the context is gone, and a
    // timer must not outlive its context's services.
    deadline_timer_.reset();
    if (joined_) wait_thread_->left();
    joined_ = false;
    // The wait thread may drop the last reference to the operation after
    // the completion has run: the pack (its descriptors, its heartbeat
    // service) is let go of first, so that it lives on only in the hold.
    pack_.reset();
    if (completion_) {
      asio::post(executor_, [completion = std::move(completion_), ec,
                             hold = HoldAccess::wrap(std::move(hold))]() mutable {
        completion(ec, std::move(hold));
      });
    }
    work_ = nullptr;
    finished_.notify_all();
    if (service_) service_->remove(this);
    keep_alive_.reset();
  }

  std::mutex mutex_;
  std::condition_variable finished_;  // state_ became done
  State state_ = State::queued;
  std::shared_ptr<const Pack> pack_;
  asio::any_io_executor executor_;
  asio::any_io_executor work_;  // executor_, tracking outstanding work
  Deadline deadline_;
  AsyncCompletion completion_;
  Cancellation cancellation_;
  std::error_code stopped_by_;  // the reason a contention was interrupted
  std::shared_ptr<WaitThread> wait_thread_;
  bool joined_ = false;  // counted by the wait thread, admitted to the queue
  std::optional<asio::steady_timer> deadline_timer_;
  AsyncAcquireService* service_ = nullptr;
  // The queue holds a plain pointer to this waiter: keep it alive until done.
  std::shared_ptr<AsyncAcquire> keep_alive_;
};

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
