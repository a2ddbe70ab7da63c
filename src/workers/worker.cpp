#include <atask/workers/worker.hpp>

#include "supervisor/access.hpp"
#include "util/platform.hpp"

#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <atomic>

namespace asio = boost::asio;

namespace atask {

namespace detail {

// Lets callbacks that may outlive the worker (timer handlers, the end of a
// run) reach it safely: the worker's destructor clears `w` under `m`, and a
// callback holds `m` for as long as it uses the worker.
struct WorkerAnchor {
  explicit WorkerAnchor(Worker* worker) : w(worker) {}
  std::mutex m;
  Worker* w;
};

// Owned by the callable of one run. Its destruction - after the executor
// returned, or when the task is canceled before it starts (the pool stopped,
// the supervisor canceled queued work) - tells the worker the run is over.
// `armed` settles a race with the launcher: a run that ends before the
// launcher has recorded it (0 -> 2) is seen by the launcher itself.
//
// A coroutine worker's host task owns one too (`host`): the host settles its
// runs itself and sets `done` when it ends; the token reports only a host
// that never ran or whose coroutine was destroyed mid-way (its aloop went).
struct RunToken {
  RunToken(std::shared_ptr<WorkerAnchor> a, std::uint64_t g, std::shared_ptr<std::atomic<int>> arm,
           bool h = false)
      : anchor(std::move(a)), gen(g), armed(std::move(arm)), host(h) {}
  RunToken(const RunToken&) = delete;
  RunToken& operator=(const RunToken&) = delete;
  ~RunToken() {
    int expected = 0;
    if (armed->compare_exchange_strong(expected, 2)) return;
    if (done.load(std::memory_order_acquire)) return;
    std::lock_guard l(anchor->m);
    if (!anchor->w) return;
    if (host)
      anchor->w->host_lost(gen);
    else
      anchor->w->run_done(gen, keep);
  }
  std::shared_ptr<WorkerAnchor> anchor;
  std::uint64_t gen;
  std::shared_ptr<std::atomic<int>> armed;
  bool keep = true;
  const bool host;
  std::atomic<bool> done{false};
};

// What wakes a waiting host: a signal with room for one, so that a wake
// sent between the host's decision to wait (under the worker's mutex) and
// its receive is not lost. Owned by the host's coroutine frame: it goes
// with the frame, also when the aloop's context destroys a suspended one.
struct WorkerHost {
  explicit WorkerHost(boost::asio::any_io_executor ex) : wake(std::move(ex), 1) {}
  boost::asio::experimental::concurrent_channel<void(boost::system::error_code)> wake;
};

}  // namespace detail

// -- Worker ------------------------------------------------------------------------------

namespace {

std::atomic<std::uint64_t> worker_names{0};

// An .aloop on a worker whose executor never runs on an aloop is a mistake,
// not a hint (as for Supervisor::submit()).
std::string blocking_aloop(const std::string& who, const std::string& aloop) {
  return who + ": .aloop = '" + aloop +
         "' names an aloop, but its executor does not return an awaitable: it runs on the pool, never on an "
         "aloop";
}

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

Worker::Worker(WorkerInit init, WorkerKind kind, bool coroutine, detail::WorkerSettings s)
    : registry_(detail::SupervisorAccess::worker_registry(init.supervisor())),
      logger_(init.supervisor().logger_ptr()),
      anchor_(std::make_shared<detail::WorkerAnchor>(this)),
      kind_(kind),
      coroutine_(coroutine),
      base_(std::move(s)),
      sv_(&init.supervisor()) {
  const std::string where = type_name() + "::" + type_name() + "()";
  auto fail = [&](const std::string& why) { throw OptionsError(where + " - " + why); };
  if (!coroutine_ && !base_.aloop.empty())
    fail(blocking_aloop(
        base_.name.empty() ? detail::kind_with_article(kind_) + " worker" : "worker '" + base_.name + "'",
        base_.aloop));
  cur_ = base_;
  try {
    if (!base_.name.empty()) {
      registry_->add(*this, base_.name);
    } else {
      const std::string prefix(to_string(kind_));
      for (;;) {  // a user may have taken a generated-looking name: skip it
        cur_.name = base_.name = prefix + "-" + std::to_string(worker_names.fetch_add(1) + 1);
        try {
          registry_->add(*this, cur_.name);
          break;
        } catch (const OptionsError&) {
        }
      }
    }
  } catch (const Error& e) {
    fail(e.what());
  }
}

Worker::~Worker() {
  retire();
}

void Worker::retire() noexcept {
  if (retired_.exchange(true)) return;
  {
    std::unique_lock lk(m_);
    retiring_ = true;  // no start from now on: not the one a restart() asked for, not anyone's
    if (state_ != WorkerState::stopped && running_ && on_executor_thread_locked())
      log().critical("{}: worker '{}' destroyed from its own executor", sv_ ? sv_->id() : "?", cur_.name);
    // A start() under way (a restart the executor asked for, finishing on
    // another thread) sees retiring_ before it activates, and gives up:
    // wait for that, so that the stop below finds the worker as it stays
    // and no thread is still inside this object when it goes.
    state_cv_.wait(lk, [&] { return !starting_ && !restarting_; });
  }
  try {
    stop();
  } catch (...) {
    log().error("worker '{}': stop at destruction threw: {}", cur_.name,
                detail::describe(std::current_exception()));
  }
  {
    std::lock_guard l(anchor_->m);
    anchor_->w = nullptr;
  }
  registry_->remove(*this);
}

std::string Worker::type_name() const {
  const char* base = "";
  switch (kind_) {
    case WorkerKind::background:
      return coroutine_ ? "AsyncWorker" : "BackgroundWorker";
    case WorkerKind::event:
      base = "EventWorker";
      break;
    case WorkerKind::interval:
      base = "IntervalWorker";
      break;
    case WorkerKind::queue:
      base = "QueueWorker";
      break;
  }
  return coroutine_ ? std::string("Async") + base : std::string(base);
}

void Worker::check_start(const StartOptions& o, const std::string& where) const {
  if (o.interval || o.delay || o.delay_before)
    throw OptionsError(where + " - interval, delay and delay_before are for interval workers");
}

void Worker::validate_overrides(const StartOptions& o) const {
  const std::string where = type_name() + "::start()";
  check_start(o, where);
  if (o.name && o.name->empty()) throw OptionsError(where + " - the name must not be empty");
  if (!coroutine_ && o.aloop && !o.aloop->empty())
    throw OptionsError(where + " - " + blocking_aloop("worker '" + name() + "'", *o.aloop));
}

bool Worker::start(const StartOptions& o) {
  const std::string where = type_name() + "::start()";
  validate_overrides(o);
  std::string old_name;
  {
    std::lock_guard lk(m_);
    if (!sv_) throw LifecycleError(where + " - the supervisor of worker '" + cur_.name + "' is gone");
    if (!sv_->is_running())
      throw LifecycleError(where + " - supervisor '" + sv_->id() + "' is not running (worker '" + cur_.name +
                           "')");
    if (retiring_) throw LifecycleError(where + " - worker '" + cur_.name + "' is being destroyed");
    if (state_ != WorkerState::stopped || starting_) return false;
    starting_ = true;
    old_name = cur_.name;
  }
  auto unmark = [&] {
    std::lock_guard lk(m_);
    starting_ = false;
    state_cv_.notify_all();
  };
  detail::WorkerSettings next = base_;
  if (o.name) next.name = *o.name;
  if (o.priority) next.priority = *o.priority;
  if (o.aloop) next.aloop = *o.aloop;
  const bool renamed = next.name != old_name;
  auto undo = [&] {
    if (renamed) registry_->rename(*this, next.name, old_name);
    unmark();
  };
  try {
    if (renamed) registry_->rename(*this, old_name, next.name);  // never under m_
  } catch (const OptionsError& e) {
    unmark();
    throw OptionsError(where + " - " + e.what());
  }
  try {
    before_start();
  } catch (...) {
    undo();
    throw;
  }
  {
    std::unique_lock lk(m_);
    std::string failure;
    bool bad_aloop = false;
    Aloop* loop = nullptr;
    if (!sv_ || !sv_->is_running()) {
      failure = "the supervisor stopped while worker '" + next.name + "' was starting";
    } else if (retiring_) {
      failure = "worker '" + next.name + "' is being destroyed";
    } else if (coroutine_) {
      try {  // the aloop must exist; its thread is where the executor runs
        loop = next.aloop.empty() ? &sv_->default_aloop() : &sv_->aloop(next.aloop);
      } catch (const Error& e) {
        failure = "worker '" + next.name + "': " + e.what();
        bad_aloop = true;
      }
    }
    if (!failure.empty()) {
      lk.unlock();
      undo();
      if (bad_aloop) throw OptionsError(where + " - " + failure);
      throw LifecycleError(where + " - " + failure);
    }
    if (loop) loop_thread_ = loop->thread_id();
    starting_ = false;
    state_cv_.notify_all();
    cur_ = next;
    last_start_ = o;
    state_ = WorkerState::active;
    stop_hook_ = draining_ = finalizing_ = need_finalize_ = false;
    counters_.consecutive_errors = 0;
    apply_start_locked(o);
    started_locked();
  }
  log().debug("worker '{}' started", name());
  try {
    after_start();
  } catch (...) {
    log().error("worker '{}': after_start() threw: {}", name(), detail::describe(std::current_exception()));
  }
  after_unlock();
  return true;
}

void Worker::stop() {
  stop_impl(true);
}
void Worker::request_stop() {
  stop_impl(false);
}

void Worker::stop_impl(bool wait) {
  std::unique_lock lk(m_);
  // The period this call found ends with stop number `target`. A waiting
  // stop waits for that count, not for the stopped state: another thread may
  // start the worker again between the stop completing and this thread
  // waking up, and the stopped state would then never come back.
  const std::uint64_t target = stops_done_ + 1;
  const bool was_stopped = state_ == WorkerState::stopped;
  if (state_ == WorkerState::active && !stop_hook_) {
    stop_hook_ = true;
    lk.unlock();
    try {
      before_stop();
    } catch (...) {
      log().error("worker '{}': before_stop() threw: {}", name(), detail::describe(std::current_exception()));
    }
    lk.lock();
    // Only the period this call found: while before_stop() ran, it may have
    // ended (its executor returned false) and another one begun.
    if (state_ == WorkerState::active && stops_done_ + 1 == target) begin_stop_locked(false);
  }
  const bool can_wait = wait && !was_stopped && !on_executor_thread_locked();
  lk.unlock();
  after_unlock();
  if (!can_wait) return;
  lk.lock();
  state_cv_.wait(lk, [&] { return stops_done_ >= target; });
}

void Worker::restart() {
  {
    std::lock_guard lk(m_);
    if (state_ != WorkerState::stopped && running_ && on_executor_thread_locked()) {
      // From the executor itself: stop now, start again once it returns.
      restart_pending_ = true;
    }
  }
  stop();
  bool pending;
  StartOptions overrides;
  {
    // A copy taken under the lock: start() reads its argument without the
    // lock while another thread's start() may assign last_start_ under it.
    std::lock_guard lk(m_);
    pending = restart_pending_;
    if (!pending) overrides = last_start_;
  }
  if (!pending) start(overrides);
}

bool Worker::is_active() const noexcept {
  std::lock_guard lk(m_);
  return state_ == WorkerState::active;
}
bool Worker::is_started() const noexcept {
  std::lock_guard lk(m_);
  return state_ != WorkerState::stopped;
}
bool Worker::is_stopped() const noexcept {
  std::lock_guard lk(m_);
  return state_ == WorkerState::stopped;
}
WorkerState Worker::state() const noexcept {
  std::lock_guard lk(m_);
  return state_;
}

bool Worker::wait_stopped_until(std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lk(m_);
  if (running_ && on_executor_thread_locked()) return state_ == WorkerState::stopped;
  return state_cv_.wait_until(lk, deadline, [&] { return state_ == WorkerState::stopped; });
}

std::string Worker::name() const {
  std::lock_guard lk(m_);
  return cur_.name;
}
Priority Worker::priority() const {
  std::lock_guard lk(m_);
  return cur_.priority;
}

WorkerInfo Worker::info() const {
  std::lock_guard lk(m_);
  WorkerInfo i;
  i.name = cur_.name;
  i.kind = kind_;
  i.state = state_;
  i.priority = cur_.priority;
  i.coroutine = coroutine_;
  i.runs = counters_.runs.load(std::memory_order_relaxed);
  i.errors = counters_.errors.load(std::memory_order_relaxed);
  if (const auto ns = counters_.last_run_ns.load(std::memory_order_relaxed); ns != 0)
    i.last_run = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns)));
  i.last_error = last_error_;
  i.last_error_at = last_error_at_;
  add_info_locked(i);
  return i;
}

Supervisor& Worker::supervisor() const {
  std::lock_guard lk(m_);
  if (!sv_) throw LifecycleError(type_name() + "::supervisor() - the supervisor is gone");
  return *sv_;
}

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
      if (state_ == WorkerState::active) {
        if (!keep) {
          log().info("worker '{}': its executor returned false - stopping", cur_.name);
          begin_stop_locked(true);
        } else {
          run_ended_locked();
          work_arrived_locked();  // the next run is taken for this host: no wake, it looks again
        }
      } else if (state_ == WorkerState::stopping) {
        continue_stop_locked();
      }
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
  after_unlock();
}

void Worker::begin_stop_locked(bool by_executor) {
  state_ = WorkerState::stopping;
  stopping_locked();
  draining_ = !by_executor && drains_on_stop() && sv_ && sv_->is_running();
  if (!draining_ && running_ && current_.valid()) stop_request_ = current_;
  queue_state_changed_locked();
  continue_stop_locked();
}

void Worker::continue_stop_locked() {
  if (running_ || finalizing_) return;
  if (draining_ && queued_locked() > 0) {
    launch_locked();
    if (running_) return;
  }
  if (host_gen_ != 0) {  // the stop completes once the host has gone
    if (host_waiting_) wake_host_locked();
    return;
  }
  finalize_locked();
}

void Worker::finalize_locked() {
  finalizing_ = true;
  need_finalize_ = true;
  draining_ = false;
  hand_back_locked();
}

void Worker::after_unlock() {
  TaskHandle<void> to_stop;
  bool fin = false;
  std::shared_ptr<detail::WorkerHost> wake;
  {
    std::lock_guard lk(m_);
    to_stop = std::move(stop_request_);
    stop_request_ = {};
    fin = std::exchange(need_finalize_, false);
    if (std::exchange(wake_pending_, false) && host_gen_ != 0 && !(wake = host_.lock())) {
      // Its coroutine is gone: a new host takes the run.
      host_gen_ = 0;
      current_ = {};
      if (running_ && sv_) start_host_locked();
    }
  }
  // Outside m_: the host it wakes takes m_ at once.
  if (wake) wake->wake.try_send(boost::system::error_code{});
  if (to_stop.valid()) to_stop.request_stop();  // outside m_: it runs stop callbacks
  if (!fin) return;
  deliver_handed_back();
  try {
    after_stop();
  } catch (...) {
    log().error("worker '{}': after_stop() threw: {}", name(), detail::describe(std::current_exception()));
  }
  bool again = false;
  StartOptions overrides;  // copied under the lock, as in restart()
  std::shared_ptr<spdlog::logger> logger;
  std::string name_now;
  {
    std::lock_guard lk(m_);
    if (state_ != WorkerState::stopped) ++stops_done_;  // supervisor_gone() may have counted it
    state_ = WorkerState::stopped;
    finalizing_ = false;
    again = std::exchange(restart_pending_, false) && !retiring_;
    if (again) {
      overrides = last_start_;
      restarting_ = true;  // retire() waits for the start below before the object may go
    }
    logger = logger_;
    name_now = cur_.name;
    state_cv_.notify_all();
  }
  // From here on `this` may be destroyed by a thread whose stop() waited
  // for the count above, unless a restart is on its way (restarting_).
  logger->debug("worker '{}' stopped", name_now);
  if (!again) return;
  try {
    start(overrides);
  } catch (...) {
    bool dying = false;
    {
      std::lock_guard lk(m_);
      dying = retiring_;
    }
    if (dying)  // destroyed while the restart was on its way: it stays stopped
      log().debug("worker '{}': restart dropped: {}", name_now, detail::describe(std::current_exception()));
    else
      log().error("worker '{}': restart failed: {}", name_now, detail::describe(std::current_exception()));
  }
  std::lock_guard lk(m_);
  restarting_ = false;
  state_cv_.notify_all();
}

void Worker::supervisor_gone() noexcept {
  {
    std::lock_guard lk(m_);
    supervisor_gone_locked();
    sv_ = nullptr;
    if (state_ != WorkerState::stopped) {
      // The supervisor's stop ended every task: nothing runs any more.
      running_ = false;
      current_ = {};
      host_gen_ = 0;
      host_waiting_ = false;
      host_.reset();
      hand_back_locked();
      state_ = WorkerState::stopped;
      ++stops_done_;
      finalizing_ = need_finalize_ = false;
      state_cv_.notify_all();
    }
  }
  deliver_handed_back();
}

// -- queue bookkeeping ------------------------------------------------------------------------------

void Worker::note_unprocessed_dropped(std::size_t n) noexcept {
  log().error("worker '{}': destroyed with {} handed-back items nobody took (take_unprocessed())", cur_.name,
              n);
}
void Worker::note_handed_back(std::size_t n, bool to_callback) noexcept {
  log().warn("worker '{}': {} queued items handed back{}", name(), n,
             to_callback ? " to on_hand_back" : " (take_unprocessed() has them)");
}
void Worker::note_hand_back_threw(std::exception_ptr e) noexcept {
  log().error("worker '{}': on_hand_back threw: {}", name(), detail::describe(e));
}

}  // namespace atask
