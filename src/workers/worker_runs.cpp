// The worker engine, its runs: the executor's calls and their errors,
// launching a run on the pool (a blocking executor) or the coroutine host
// on an aloop (a coroutine executor), and the end of a run. The lifecycle
// is in worker.cpp.
#include <atask/workers/worker.hpp>

#include "util/platform.hpp"
#include "workers/run_token.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <ctime>

namespace asio = boost::asio;

namespace atask {

namespace {

// What a stop request makes code throw: an aborted Asio wait or TaskCanceled.
bool is_cancellation(std::exception_ptr e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const TaskCanceled&) {
    return true;
  } catch (const boost::system::system_error& se) {
    return se.code() == boost::asio::error::operation_aborted;
  } catch (...) {
  }
  return false;
}

}  // namespace

bool Worker::execute(WorkerContext&) {
  throw Error(type_name() + " - no blocking executor");  // unreachable: every blocking type overrides it
}
asio::awaitable<bool> Worker::execute_async(WorkerContext&) {
  throw Error(type_name() + " - no coroutine executor");  // unreachable: every coroutine type overrides it
}

// -- executor calls ------------------------------------------------------------------------

void Worker::call_started() noexcept {
  // The coarse clock (a few ns instead of ~60 here): last_run is for people
  // and dashboards, millisecond resolution is plenty.
  timespec ts{};
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  counters_.last_run_ns.store(std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec,
                              std::memory_order_relaxed);
}

bool Worker::call_ended(std::exception_ptr e, WorkerContext* ctx) noexcept {
  // One executor call at a time: this thread is the only writer.
  counters_.runs.store(counters_.runs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (!e) {
    if (counters_.consecutive_errors.load(std::memory_order_relaxed) != 0)
      counters_.consecutive_errors.store(0);
    return true;
  }
  std::unique_lock lk(m_);
  if (ctx && ctx->stop_requested() && is_cancellation(e)) {
    // Ended by its stop (a coroutine's wait aborted by it, say): not an error.
    lk.unlock();
    log().debug("worker '{}': executor ended by the stop: {}", ctx->name, detail::describe(e));
    return true;
  }
  ++counters_.errors;
  ++counters_.consecutive_errors;
  const bool give_up = cur_.stop_after_errors != 0 && counters_.consecutive_errors >= cur_.stop_after_errors;
  const std::size_t in_a_row = counters_.consecutive_errors.load();
  WorkerError err{cur_.name, ctx ? ctx->task_id : 0, e, detail::describe(e)};
  last_error_ = err.message;
  last_error_at_ = std::chrono::system_clock::now();
  lk.unlock();
  report(err);
  if (give_up)
    log().error("worker '{}': its executor threw {} times in a row - stopping it (stop_after_errors)",
                err.worker, in_a_row);
  return !give_up;
}

void Worker::report(const WorkerError& err) noexcept {
  ErrorHandler h;
  {
    std::lock_guard lk(m_);
    h = cur_.on_error;
  }
  if (!h) {
    log().error("worker '{}': executor threw (task #{}): {}", err.worker, err.task_id, err.message);
    return;
  }
  try {
    h(err);
  } catch (...) {
    log().error("worker '{}': on_error threw: {}", err.worker, detail::describe(std::current_exception()));
  }
}

// -- scheduling ------------------------------------------------------------------------------

bool Worker::on_executor_thread_locked() const noexcept {
  if (!running_) return false;
  const auto me = std::this_thread::get_id();
  return me == run_thread_ || (coroutine_ && me == loop_thread_);
}

void Worker::work_arrived_locked() {
  if (state_ != WorkerState::active || running_) return;
  if (!take_run_locked()) return;
  launch_locked();
}

void Worker::launch_locked() {
  if (!sv_) return launch_failed_locked("the supervisor is gone");
  if (coroutine_) {
    // The run is taken for the host: a live one runs it (woken if it
    // waits), else a new host task is started for it.
    running_ = true;
    run_thread_ = {};
    if (host_gen_ != 0) {
      if (host_waiting_) wake_host_locked();
      return;
    }
    return start_host_locked();
  }
  const std::uint64_t gen = ++run_gen_;
  auto armed = std::make_shared<std::atomic<int>>(0);
  auto token = std::make_unique<detail::RunToken>(anchor_, gen, armed);
  const TaskOptions o{.priority = cur_.priority, .delay = {}, .aloop = cur_.aloop, .name = cur_.name};
  running_ = true;
  run_thread_ = {};
  try {
    current_ =
        sv_->submit(o, [this, t = std::move(token)](std::stop_token st) { run_body(std::move(st), *t); });
  } catch (const std::exception& e) {
    running_ = false;
    return launch_failed_locked(e.what());
  }
  int expected = 0;
  if (!armed->compare_exchange_strong(expected, 1)) {
    // Canceled before it could start (the supervisor is stopping).
    running_ = false;
    current_ = {};
    return launch_failed_locked("its run was canceled before it started");
  }
}

void Worker::launch_failed_locked(const std::string& why) {
  if (sv_ && sv_->is_running())
    log().error("worker '{}': could not run its executor: {}", cur_.name, why);
  else  // the supervisor is stopping: expected, the worker stops with it
    log().info("worker '{}': stops with its supervisor ({})", cur_.name, why);
  if (state_ == WorkerState::active) {
    begin_stop_locked(true);
  } else {
    draining_ = false;  // nothing can drain any more: continue_stop_locked() hands the rest back
  }
}

bool Worker::begin_body(std::uint64_t& task_id) {
  std::lock_guard lk(m_);
  task_id = current_.valid() ? current_.id() : 0;
  run_thread_ = std::this_thread::get_id();
  return state_ == WorkerState::active || (state_ == WorkerState::stopping && draining_);
}

void Worker::run_body(std::stop_token st, detail::RunToken& token) {
  std::uint64_t id = 0;
  if (!begin_body(id)) return;  // stopped before it began
  WorkerContext ctx{*this, cur_.name, id, std::move(st)};
  try {
    token.keep = execute(ctx);
  } catch (...) {
    token.keep = call_ended(std::current_exception(), &ctx);
  }
}

// -- coroutine executors: the host ------------------------------------------------------------
//
// A coroutine worker does not submit a task per run. Its first run of an
// active period starts one task on its aloop, the host, which runs that run
// and every later one of the period: between runs it waits on the aloop
// (no thread held) until launch_locked() takes the next run for it and
// wakes it. A trigger or a put then costs what a post to the aloop costs.
// The host is a supervisor task like a run used to be (the executor's
// context has its id and its stop token, a soft shutdown stage requests its
// stop, tasks() shows it under the worker's name). It ends with its period:
// the stop of the worker wakes it (or requests the stop of the run in
// progress, as before) and the stop completes once it is gone. A host
// whose task is stopped from outside (cancel() of its id) ends too, and the
// next run gets a new host.

void Worker::start_host_locked() {
  const std::uint64_t gen = ++run_gen_;
  auto armed = std::make_shared<std::atomic<int>>(0);
  auto token = std::make_unique<detail::RunToken>(anchor_, gen, armed, true);
  const TaskOptions o{.priority = cur_.priority, .delay = {}, .aloop = cur_.aloop, .name = cur_.name};
  host_gen_ = gen;
  host_waiting_ = false;
  host_.reset();
  try {
    current_ = sv_->submit(
        o, [this, t = std::move(token)](std::stop_token st) { return host_body(std::move(st), t.get()); });
  } catch (const std::exception& e) {
    running_ = false;
    host_gen_ = 0;
    return launch_failed_locked(e.what());
  }
  int expected = 0;
  if (!armed->compare_exchange_strong(expected, 1)) {
    // Canceled before it could start (the supervisor is stopping).
    running_ = false;
    host_gen_ = 0;
    current_ = {};
    return launch_failed_locked("its run was canceled before it started");
  }
}

void Worker::work_arrived_then_unlock_locked() {
  defer_wake_ = true;
  work_arrived_locked();
  defer_wake_ = false;
}

void Worker::wake_host_locked() noexcept {
  host_waiting_ = false;
  if (defer_wake_) {
    wake_pending_ = true;
    return;
  }
  if (auto h = host_.lock()) {
    h->wake.try_send(boost::system::error_code{});
    return;
  }
  // Its coroutine is gone (its aloop's context went): the token reports it, a new host takes the run.
  host_gen_ = 0;
  current_ = {};
  if (running_ && sv_) start_host_locked();
}

// The host's task ended without the host settling it: canceled before it
// started, or its coroutine destroyed while it waited or ran.
void Worker::host_lost(std::uint64_t gen) noexcept {
  {
    std::lock_guard lk(m_);
    if (host_gen_ != gen) return;
    host_gen_ = 0;
    host_waiting_ = false;
    host_.reset();
    current_ = {};
    const bool had_run = running_;
    running_ = false;
    run_thread_ = {};
    if (state_ == WorkerState::active) {
      if (had_run) run_ended_locked();
      work_arrived_locked();
    } else if (state_ == WorkerState::stopping) {
      continue_stop_locked();
    }
  }
  after_unlock();
}

asio::awaitable<void> Worker::host_body(std::stop_token st, detail::RunToken* token) {
  auto host = std::make_shared<detail::WorkerHost>(co_await asio::this_coro::executor);
  std::uint64_t id = 0;
  {
    std::lock_guard lk(m_);
    host_ = host;
    id = current_.valid() ? current_.id() : 0;
  }
  WorkerContext ctx{*this, cur_.name, id, st};
  bool ran = false;  // a run ended since the host last waited: let the aloop's other work in first
  for (;;) {
    enum { run, wait, leave } next;
    {
      std::lock_guard lk(m_);
      const bool wanted = state_ == WorkerState::active || (state_ == WorkerState::stopping && draining_);
      if (st.stop_requested() || !wanted)
        next = leave;
      else if (running_)
        next = run;
      else
        next = state_ == WorkerState::active ? wait : leave;
      if (next == wait) {
        host_waiting_ = true;
        ran = false;
      } else if (next == run) {
        run_thread_ = std::this_thread::get_id();
      } else {
        // It goes: a run taken for it meanwhile goes to a new host (this one's task was stopped from
        // outside) or is dropped (the worker stops).
        token->done.store(true, std::memory_order_release);
        host_gen_ = 0;
        host_waiting_ = false;
        host_.reset();
        current_ = {};
        if (running_ && wanted) {
          start_host_locked();
        } else {
          running_ = false;
          run_thread_ = {};
          if (state_ == WorkerState::stopping) continue_stop_locked();
        }
      }
    }
    if (next == leave) {
      // May complete the stop, after which `this` may be gone: nothing after it touches the worker.
      after_unlock();
      co_return;
    }
    if (next == wait) {
      boost::system::error_code ec;
      co_await host->wake.async_receive(asio::redirect_error(asio::use_awaitable, ec));
      continue;  // woken, or its task's stop canceled the wait: the state decides
    }
    if (ran) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    bool keep = true;
    try {
      keep = co_await execute_async(ctx);
    } catch (...) {
      keep = call_ended(std::current_exception(), &ctx);
    }
    ran = true;
    {
      std::lock_guard lk(m_);
      running_ = false;
      run_thread_ = {};
      settle_run_locked(keep);  // a next run is taken for this host: no wake, it looks again
    }
    after_unlock();
  }
}

void Worker::run_done(std::uint64_t gen, bool keep) noexcept {
  {
    std::lock_guard lk(m_);
    if (!running_ || gen != run_gen_) return;
    running_ = false;
    run_thread_ = {};
    current_ = {};
    settle_run_locked(keep);
  }
  after_unlock();
}

void Worker::settle_run_locked(bool keep) {
  if (state_ == WorkerState::active) {
    if (!keep) {
      log().info("worker '{}': its executor returned false - stopping", cur_.name);
      begin_stop_locked(true);
    } else {
      run_ended_locked();
      work_arrived_locked();
    }
  } else if (state_ == WorkerState::stopping) {
    continue_stop_locked();
  }
}

}  // namespace atask
