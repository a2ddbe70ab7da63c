// The worker engine, its lifecycle: construction and retirement, start,
// the staged stop (drain, hand back, after_stop, a restart asked for by
// the executor), state and info. The runs themselves are in worker_runs.cpp.
#include <atask/workers/worker.hpp>

#include "supervisor/access.hpp"
#include "util/platform.hpp"
#include "workers/run_token.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

namespace atask {

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
