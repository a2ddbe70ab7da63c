#include <atask/aloop/aloop.hpp>

#include <boost/asio/post.hpp>

#include <atask/core/errors.hpp>

#include "aloop/task_executor.hpp"
#include "util/platform.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include <memory>

namespace atask {

Aloop::Aloop(std::string name)
    : name_(std::move(name)), ctx_(std::make_unique<boost::asio::io_context>(1)), raw_ctx_(ctx_.get()) {}

Aloop::~Aloop() {
  if (on_thread()) {
    // Destroyed from its own thread: cannot join itself. Let the thread go;
    // it ends when run() returns.
    std::lock_guard lk(m_);
    if (ctx_) ctx_->stop();
    if (thread_.joinable()) thread_.detach();
    return;
  }
  stop();
}

void Aloop::start() {
  std::lock_guard lk(m_);
  if (started_) throw LifecycleError("Aloop::start() - aloop '" + name_ + "' was already started");
  if (!ctx_) throw LifecycleError("Aloop::start() - aloop '" + name_ + "' is stopped");
  started_ = true;
  running_.store(true, std::memory_order_release);
  thread_ = std::thread([this, ctx = ctx_.get()] {
    thread_id_.store(std::this_thread::get_id(), std::memory_order_release);
    detail::set_thread_name(name_);
    auto work = boost::asio::make_work_guard(*ctx);
    ctx->run();
  });
  // Known as soon as start() returns, not only once the thread got going
  // (the thread stores it too, for code that runs on it before this line).
  thread_id_.store(thread_.get_id(), std::memory_order_release);
}

void Aloop::stop() {
  if (on_thread()) throw LifecycleError("Aloop::stop() - called on aloop '" + name_ + "''s own thread");
  std::unique_ptr<boost::asio::io_context> ctx;
  std::thread t;
  {
    std::lock_guard lk(m_);
    if (!ctx_) return;
    stopped_.store(true, std::memory_order_release);
    ctx_->stop();
    t = std::move(thread_);
    ctx = std::move(ctx_);
  }
  if (t.joinable()) t.join();
  running_.store(false, std::memory_order_release);
  // A later thread may get the same id: this loop's thread is gone.
  thread_id_.store(std::thread::id{}, std::memory_order_release);
  // Destroying the context destroys the coroutines still suspended on it;
  // their frames end their tasks as canceled.
  ctx.reset();
}

Aloop::executor_type Aloop::get_executor() const {
  std::lock_guard lk(m_);
  if (!ctx_) throw LifecycleError("Aloop::get_executor() - aloop '" + name_ + "' is stopped");
  return ctx_->get_executor();
}

namespace {

// Starts `coro` on `ex` (the loop's executor, or that executor scoped to a
// task), bound to the slot, with `on_done` called when co_spawn is through.
template <class Executor>
void spawn_on(Aloop& loop, boost::asio::io_context& ctx, Executor ex, boost::asio::awaitable<void> coro,
              boost::asio::cancellation_slot slot, detail::UniqueFunction on_done) {
  auto token =
      boost::asio::bind_cancellation_slot(slot, [done = std::move(on_done)](std::exception_ptr) mutable {
        if (done) done();
      });
  if (loop.on_thread()) {
    // On the loop's own thread co_spawn would run the coroutine inline, up
    // to its first suspension, inside the caller - who may hold locks the
    // coroutine needs (a worker launching its next run does). Post it, as
    // co_spawn from any other thread does.
    boost::asio::post(ctx, [ex = std::move(ex), coro = std::move(coro), token = std::move(token)]() mutable {
      boost::asio::co_spawn(ex, std::move(coro), std::move(token));
    });
    return;
  }
  boost::asio::co_spawn(ex, std::move(coro), std::move(token));
}

}  // namespace

void Aloop::spawn(boost::asio::awaitable<void> coro, boost::asio::cancellation_slot slot,
                  detail::UniqueFunction on_done) {
  if (on_thread()) {
    // No lock here: the context cannot go away meanwhile (stop() from
    // another thread joins this one first).
    spawn_on(*this, *raw_ctx_, raw_ctx_->get_executor(), std::move(coro), slot, std::move(on_done));
    return;
  }
  std::lock_guard lk(m_);  // from other threads co_spawn only posts
  if (!ctx_ || !started_)
    throw LifecycleError("Aloop::spawn() - aloop '" + name_ + "' is " + (ctx_ ? "not started" : "stopped"));
  spawn_on(*this, *ctx_, ctx_->get_executor(), std::move(coro), slot, std::move(on_done));
}

void Aloop::spawn(boost::asio::awaitable<void> coro, boost::asio::cancellation_slot slot,
                  detail::UniqueFunction on_done, detail::TaskStateBase& task) {
  // co_spawn keeps a copy of its executor in the handler it installs in the
  // slot, for as long as the slot holds it. Here that executor holds the
  // task, and the slot is the task's own: a cycle, and the task would never
  // be freed. So co_spawn gets a slot of its own, owned by its completion
  // handler (which co_spawn keeps until it is through with the slot), and
  // the task's slot only forwards to it, through a weak reference.
  auto own = std::make_shared<boost::asio::cancellation_signal>();
  if (slot.is_connected())
    slot.assign(
        [weak = std::weak_ptr<boost::asio::cancellation_signal>(own)](boost::asio::cancellation_type_t type) {
          if (auto s = weak.lock()) s->emit(type);
        });
  detail::UniqueFunction done([own, on_done = std::move(on_done)]() mutable {
    if (on_done) on_done();
  });
  task.add_ref();
  auto ref = detail::Ref<detail::TaskStateBase>::adopt(&task);
  if (on_thread()) {
    spawn_on(*this, *raw_ctx_, detail::TaskExecutor(raw_ctx_->get_executor(), std::move(ref)),
             std::move(coro), own->slot(), std::move(done));
    return;
  }
  std::lock_guard lk(m_);
  if (!ctx_ || !started_)
    throw LifecycleError("Aloop::spawn() - aloop '" + name_ + "' is " + (ctx_ ? "not started" : "stopped"));
  spawn_on(*this, *ctx_, detail::TaskExecutor(ctx_->get_executor(), std::move(ref)), std::move(coro),
           own->slot(), std::move(done));
}

}  // namespace atask
