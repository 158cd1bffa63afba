// The asynchronous cluster acquire (ClusterLock::async_acquire): the
// contention of cluster_contention.hpp, driven on the caller's executor.
// Each round trip and each wait is sent, and the contention goes on when
// its answer is in (resume(), on a gRPC thread, posts run()). No thread
// waits.
//
// Thread-safety: run() runs on the executor, one at a time (a run is
// posted only when the one before it has sent a request and returned, or
// at the start);
// resume() runs on gRPC threads; cancel() and the deadline on any thread.
// mutex_ guards what they share.

#include <condition_variable>
#include <mutex>

#include <asio/cancellation_type.hpp>
#include <asio/execution/context.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/query.hpp>
#include <asio/steady_timer.hpp>

#include <packlock/cluster.hpp>
#include <packlock/error.hpp>

#include "abandon_service.hpp"
#include "cancellation.hpp"
#include "cluster_contention.hpp"
#include "owner_record.hpp"

namespace packlock::detail {

class ClusterAcquireOperation final : public std::enable_shared_from_this<ClusterAcquireOperation> {
 public:
  ClusterAcquireOperation(std::shared_ptr<const EtcdClient> client, ClusterLockRequest request,
                          asio::any_io_executor executor, ClusterCompletion completion)
      : request_(std::move(request)),
        hold_(ClusterHold::create(std::move(client))),
        executor_(std::move(executor)),
        completion_(std::move(completion)) {
    request_.contend.cancel = &cancellation_;
    contention_.emplace(*hold_, request_, [this] { resume(); });
  }

  void start() {
    std::lock_guard lock(mutex_);
    try {
      service_ = &asio::use_service<AbandonService<ClusterAcquireOperation>>(
          asio::query(executor_, asio::execution::context));
      service_->add(shared_from_this());
      // gRPC's callbacks refer to this operation: it lives until done.
      keep_alive_ = shared_from_this();
      if (request_.contend.deadline) {
        deadline_timer_.emplace(executor_, *request_.contend.deadline);
        deadline_timer_->async_wait([self = shared_from_this()](std::error_code ec) {
          if (!ec) self->contention_->interrupt();
        });
      }
    } catch (const std::system_error& e) {
      return fail({e.code().value(), std::system_category()});
    } catch (const std::bad_alloc&) {
      return fail(std::make_error_code(std::errc::not_enough_memory));
    }
    // The executor counts the operation as work while its answers are
    // awaited on other threads, so that its run() does not return first.
    work_ = asio::prefer(executor_, asio::execution::outstanding_work.tracked);
    post_run();
  }

  // Any cancellation type ends the wait: waiting has no side effects.
  void cancel(asio::cancellation_type type) noexcept {
    if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                 asio::cancellation_type::total)) == asio::cancellation_type::none) {
      return;
    }
    cancellation_.cancel();
    contention_->interrupt();
  }

  // The context shuts down: no handler, no more runs; returns once no
  // answer is awaited, with the lease revoked.
  void abandon() {
    std::unique_lock lock(mutex_);
    if (done_) return;
    done_ = true;
    completion_ = nullptr;
    cancellation_.cancel();
    contention_->interrupt();
    // gRPC's callbacks refer to the contention; a posted run does not run
    // any more (the context drops it).
    answered_.wait(lock, [this] { return !awaiting_; });
    deadline_timer_.reset();
    work_ = nullptr;
    const auto self = std::move(keep_alive_);
    lock.unlock();
    if (hold_) (void)hold_->release();
  }

 private:
  void post_run() {
    asio::post(executor_, [self = shared_from_this()] { self->run(); });
  }

  // On the executor.
  void run() {
    {
      std::lock_guard lock(mutex_);
      if (done_) return;
    }
    std::error_code ec;
    for (;;) {
      const Step step = contend_on(*contention_, request_.contend, ec);
      if (step != Step::pending) return finish(step, ec);
      std::lock_guard lock(mutex_);
      if (answers_waiting_ == 0) {
        awaiting_ = true;
        return;
      }
      --answers_waiting_;  // its answer came before this run returned
    }
  }

  // On a gRPC thread: the answer of the request the last run sent is in.
  void resume() {
    std::lock_guard lock(mutex_);
    if (!awaiting_) {
      ++answers_waiting_;  // the run that sent it has not returned yet
      return;
    }
    awaiting_ = false;
    if (done_) return answered_.notify_all();  // abandoned
    try {
      post_run();
    } catch (...) {
      // No memory to post: the process is failing; the operation ends
      // with its context.
    }
  }

  void finish(Step step, std::error_code ec) {
    if (step == Step::locked) ec = hold_->take_over(*contention_, request_);
    if (!ec) return complete({}, ClusterLockHold(std::move(hold_)));
    // The lease (and the key) go before the handler runs, so that nothing
    // can take the lock for this waiter afterwards. The operation ends on
    // the executor: its last reference may take the client with it, which
    // must not go on a gRPC thread.
    {
      std::lock_guard lock(mutex_);
      awaiting_ = true;
    }
    // No reference is held on the gRPC thread: keep_alive_ keeps the
    // operation until complete() lets it go on the executor.
    hold_->release_async([this, ec](std::error_code) {
      std::lock_guard lock(mutex_);
      awaiting_ = false;
      if (done_) return answered_.notify_all();  // abandoned
      try {
        asio::post(executor_, [this, ec] { complete(ec, ClusterLockHold()); });
      } catch (...) {
        // No memory to post: the handler is not called; the lease is gone.
      }
    });
  }

  void fail(std::error_code ec) {
    done_ = true;
    asio::post(executor_, [self = shared_from_this(), ec] {
      self->complete(ec, ClusterLockHold());
    });
  }

  // The handler's adapter posts it to its executor; the operation itself
  // ends on this executor too, where its last reference goes.
  void complete(std::error_code ec, ClusterLockHold hold) {
    std::unique_lock lock(mutex_);
    ClusterCompletion completion = std::move(completion_);
    done_ = true;
    if (deadline_timer_) deadline_timer_->cancel();
    work_ = nullptr;
    if (service_) service_->remove(this);
    const auto self = std::move(keep_alive_);
    lock.unlock();
    if (completion) completion(ec, std::move(hold));
  }

  std::mutex mutex_;
  std::condition_variable answered_;  // awaiting_ became false
  ClusterLockRequest request_;
  Cancellation cancellation_;
  std::unique_ptr<ClusterHold> hold_;
  std::optional<ClusterHold::Contention> contention_;
  asio::any_io_executor executor_;
  asio::any_io_executor work_;  // executor_, tracking outstanding work
  ClusterCompletion completion_;
  std::optional<asio::steady_timer> deadline_timer_;
  AbandonService<ClusterAcquireOperation>* service_ = nullptr;
  bool awaiting_ = false;        // a gRPC callback is to come
  int answers_waiting_ = 0;     // answers in before their run returned
  bool done_ = false;
  std::shared_ptr<ClusterAcquireOperation> keep_alive_;
};

}  // namespace packlock::detail

namespace packlock::detail {

std::shared_ptr<ClusterAcquireOperation> make_cluster_acquire(
    const ClusterLock& lock, asio::any_io_executor executor, Mode mode,
    std::optional<std::chrono::steady_clock::time_point> deadline, ClusterCompletion completion) {
  if (!lock.client_) {
    asio::post(executor, [completion = std::move(completion)] {
      completion(errc::not_open, ClusterLockHold());
    });
    return nullptr;
  }
  auto operation = std::make_shared<ClusterAcquireOperation>(
      lock.client_, lock.request_for(mode, /*may_wait=*/true, deadline), std::move(executor),
      std::move(completion));
  return operation;
}

void start_cluster_acquire(const std::shared_ptr<ClusterAcquireOperation>& operation) {
  operation->start();
}

void cancel_cluster_acquire(const std::weak_ptr<ClusterAcquireOperation>& operation,
                            asio::cancellation_type type) noexcept {
  if (const auto alive = operation.lock()) alive->cancel(type);
}

}  // namespace packlock::detail
