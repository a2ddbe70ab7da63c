#include "supervisor/shutdown.hpp"

#include <atask/supervisor/detail/worker_registry.hpp>

#include "util/platform.hpp"
#include "supervisor/options.hpp"
#include "supervisor/task_registry.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <exception>

namespace asio = boost::asio;

namespace atask::detail {

using State = Lifecycle::State;

Shutdown::Shutdown(Supervisor& owner, const SupervisorOptions& opt, std::shared_ptr<spdlog::logger> log,
                   asio::io_context& loop, Lifecycle& life, TaskRegistry& tasks, ThreadPool& pool,
                   WorkerRegistry& workers)
    : owner_(owner),
      id_(opt.id),
      signal_stop_(opt.signal_stop),
      log_(std::move(log)),
      loop_(loop),
      life_(life),
      tasks_(tasks),
      pool_(pool),
      workers_(workers),
      stages_(loop, tasks, *this, log_, opt.id) {}

// -- steps ---------------------------------------------------------------------------

void Shutdown::add_builtin(Step step) {
  std::lock_guard lk(stop_m_);
  steps_.push_back({std::move(step), true});
}

void Shutdown::add_step(Step step) {
  std::lock_guard lk(stop_m_);
  if (start_called_ || life_.load() != State::created)
    throw LifecycleError("Supervisor::add_step() - supervisor '" + id_ +
                         "' was already started; add steps before start()");
  if (step.name.empty()) throw OptionsError("Supervisor::add_step() - the step name must not be empty");
  for (auto& s : steps_)
    if (s.step.name == step.name)
      throw OptionsError("Supervisor::add_step() - a step named '" + step.name + "' exists" +
                         (s.builtin ? " (a built-in step)" : ""));
  steps_.push_back({std::move(step), false});
}

std::vector<std::string> Shutdown::boot_order() const {
  std::lock_guard lk(stop_m_);
  auto order = start_called_ && !order_.empty() ? order_ : resolve(steps_, "Supervisor::boot_order()");
  std::vector<std::string> names;
  for (auto i : order) names.push_back(steps_[i].step.name);
  return names;
}

bool Shutdown::start() {
  {
    std::lock_guard lk(stop_m_);
    if (start_called_ || life_.load() != State::created)
      throw LifecycleError(
          "Supervisor::start() - supervisor '" + id_ + "' was already started" +
          (life_.load() == State::running && !stop_begun_ ? "" : " and stopped; create a new one"));
    order_ = resolve(steps_, "Supervisor::start()");  // before anything starts: the supervisor stays created
    start_called_ = true;
    booting_ = true;
    boot_thread_.store(std::this_thread::get_id());
  }
  log_->debug("{}: boot order: {}", id_, joined(steps_, order_));
  std::exception_ptr failure;
  std::string failed;
  for (auto i : order_) {
    auto& slot = steps_[i];
    {
      std::lock_guard lk(stop_m_);
      if (pending_stop_) break;  // a stop came while starting: start no more
    }
    log_->debug("{}: starting step '{}'", id_, slot.step.name);
    try {
      if (slot.step.start) slot.step.start(owner_);
    } catch (...) {
      failure = std::current_exception();
      failed = slot.step.name;
      std::lock_guard lk(stop_m_);
      slot.state = StepState::failed;
      break;
    }
    std::lock_guard lk(stop_m_);
    slot.state = StepState::running;
    started_.push_back(i);
  }

  std::unique_lock lk(stop_m_);
  booting_ = false;
  boot_thread_.store({});
  stop_cv_.notify_all();  // stop() calls that waited for start() to end
  if (failure) {
    const std::string why = describe(failure);
    const auto n = started_.size();
    begin_locked(StopOptions{}, true);
    spawn_stopper_locked();
    lk.unlock();
    log_->error("{}: step '{}' failed to start: {} - stopping the {} steps started before it", id_, failed,
                why, n);
    finish_stop();
    throw Error("Supervisor::start() - step '" + failed + "' failed to start: " + why + " (the " +
                std::to_string(n) + " steps started before it were stopped)");
  }
  if (pending_stop_) {
    const StopOptions o = *pending_stop_;
    begin_locked(o, false);
    lk.unlock();
    log_->info("{}: a stop was requested while starting - stopping", id_);
    close(true);
    lk.lock();
    spawn_stopper_locked();
    return false;
  }
  return true;
}

std::vector<StepInfo> Shutdown::step_infos() const {
  std::vector<StepInfo> out;
  std::lock_guard lk(stop_m_);
  auto add = [&](const StepSlot& s) { out.push_back({s.step.name, s.step.depends_on, s.builtin, s.state}); };
  if (!order_.empty())
    for (auto k : order_) add(steps_[k]);
  else
    for (auto& s : steps_) add(s);
  return out;
}

// -- stopping -------------------------------------------------------------------------

StopReport Shutdown::stop(const StopOptions& o, bool own, bool on_loop) {
  const bool can_wait = o.wait && !own;
  std::unique_lock lk(stop_m_);
  for (;;) {
    if (joined_) {
      StopReport r = report_;
      r.already_stopped = true;
      return r;
    }
    if (!start_called_) {  // never started: nothing to stop, and no start() after this
      start_called_ = true;
      life_.store(State::stopped);
      walk_done_ = join_claimed_ = joined_ = true;
      report_.completed = true;
      return report_;
    }
    if (!booting_) break;
    if (own) {  // start() (or something it waits for) asked: done once its current step returns
      if (!pending_stop_) pending_stop_ = o;
      StopReport r = report_;
      r.completed = false;
      return r;
    }
    stop_cv_.wait(lk, [&] { return !booting_; });
  }
  if (stop_begun_) {  // another stop is under way: it decides how
    lk.unlock();
    return can_wait ? finish_stop() : report_now(false);
  }
  begin_locked(o, can_wait);
  if (can_wait) {
    spawn_stopper_locked();
    lk.unlock();
    return finish_stop();
  }
  // Cannot wait: closed to new work before this returns - unless called on
  // the loop itself, where the stopper closes (worker hooks are user code).
  if (!on_loop) {
    lk.unlock();
    close(true);
    lk.lock();
  }
  spawn_stopper_locked();
  StopReport r = report_;
  r.completed = false;
  return r;
}

StopReport Shutdown::block(bool own) {
  {
    std::lock_guard lk(stop_m_);
    if (!start_called_) throw LifecycleError("Supervisor::block() - supervisor '" + id_ + "' is not started");
  }
  if (own)
    throw LifecycleError(
        "Supervisor::block() - called from one of the supervisor's own threads; it would wait for itself");
  return finish_stop();
}

bool Shutdown::unfinished() const {
  std::lock_guard lk(stop_m_);
  return start_called_ && !joined_;
}

bool Shutdown::on_own_thread() const noexcept {
  const auto me = std::this_thread::get_id();
  return me == stopper_id_.load() || me == boot_thread_.load();
}

// Under stop_m; once per supervisor.
void Shutdown::begin_locked(const StopOptions& o, bool can_wait) {
  stop_begun_ = true;
  graceful_ = can_wait;
  stop_opts_ = o;
  if (!forever(o.warm_timeout)) warm_deadline_ = std::chrono::steady_clock::now() + o.warm_timeout;
}

// Under stop_m, after begin_locked().
void Shutdown::spawn_stopper_locked() {
  stopper_ = std::thread([this] { walk(); });
  stopper_id_.store(stopper_.get_id());
}

bool Shutdown::close(bool tell_workers) {
  StopOptions o;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::chrono::milliseconds warm_left{-1};
  {
    std::lock_guard lk(stop_m_);
    if (life_.load() != State::running) return false;
    life_.store(State::stopping);
    tasks_.close();  // no task registers past this point
    o = stop_opts_;
    deadline = warm_deadline_;
    if (warm_deadline_)
      warm_left = std::max(
          std::chrono::milliseconds(0),
          std::chrono::ceil<std::chrono::milliseconds>(*warm_deadline_ - std::chrono::steady_clock::now()));
  }
  // Workers still active are told to stop, without waiting, before the
  // pool closes: a worker whose next run is refused would log an error.
  if (tell_workers) workers_.stop_all(std::chrono::steady_clock::now());
  log_->info("{}: stopping (warm stage: {} queued tasks, up to {} ms)", id_,
             o.cancel_queued ? "canceling" : "draining", warm_left.count());
  pool_.close(o.cancel_queued ? QueuedTasks::cancel : QueuedTasks::run);
  tasks_.cancel_pending(o.cancel_queued, "is stopping");
  // The stop options and the warm deadline are fixed once the stop began:
  // the stages take them with them.
  asio::post(loop_, [this, deadline, soft = o.soft_timeout] { stages_.begin(deadline, soft); });
  return true;
}

// The stopper thread: every started step's stop hook, in reverse order.
void Shutdown::walk() {
  stopper_id_.store(std::this_thread::get_id());  // before any hook runs (the spawner stores it too)
  set_thread_name(id_ + "-stop");
  if (!graceful_) close(true);  // begun by stop(wait=false) on the loop or a signal
  for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
    auto& slot = steps_[*it];
    log_->debug("{}: stopping step '{}'", id_, slot.step.name);
    try {
      if (slot.step.stop) slot.step.stop(owner_);
    } catch (...) {
      log_->error("{}: step '{}': its stop hook threw: {} - stopping the others", id_, slot.step.name,
                  describe(std::current_exception()));
    }
    std::lock_guard lk(stop_m_);
    slot.state = StepState::stopped;
  }
  const std::size_t canceled = tasks_.shutdown_canceled();
  std::lock_guard lk(stop_m_);  // never hold reg_m while taking stop_m: close() nests them the other way
  report_.canceled = canceled;
  report_.completed = true;
  life_.store(State::stopped);
  log_->info("{}: stopped ({} stage, {} canceled, {} asked to stop, {} abandoned)", id_,
             to_string(report_.stage), report_.canceled, report_.stop_requested, report_.abandoned.size());
  walk_done_ = true;
  stop_cv_.notify_all();  // nothing of *this is touched after the unlock: the joiner may free it
}

// Waits for the stopper's walk; the first caller joins the stopper.
StopReport Shutdown::finish_stop() {
  std::unique_lock lk(stop_m_);
  stop_cv_.wait(lk, [&] { return walk_done_; });
  if (!join_claimed_) {
    join_claimed_ = true;
    lk.unlock();
    if (stopper_.joinable()) stopper_.join();
    stopper_id_.store({});  // a joined thread's id may be given to a new thread
    lk.lock();
    joined_ = true;
    stop_cv_.notify_all();
  } else {
    stop_cv_.wait(lk, [&] { return joined_; });
  }
  StopReport r = report_;
  r.completed = true;
  return r;
}

StopReport Shutdown::report_now(bool completed) {
  std::lock_guard lk(stop_m_);
  StopReport r = report_;
  r.completed = completed;
  return r;
}

// -- for the built-in steps -------------------------------------------------------------

void Shutdown::open() {
  std::lock_guard lk(stop_m_);
  tasks_.open();
  life_.store(State::running);
}

std::pair<StopStage, std::chrono::milliseconds> Shutdown::wait_drained() {
  std::unique_lock lk(stop_m_);
  stop_cv_.wait(lk, [&] { return drained_; });
  return {report_.stage, stop_opts_.soft_timeout};
}

std::chrono::steady_clock::time_point Shutdown::warm_deadline() const {
  std::lock_guard lk(stop_m_);
  return warm_deadline_.value_or(std::chrono::steady_clock::time_point::max());
}

void Shutdown::listen_for_signals() {
  signals_.emplace(loop_, SIGINT, SIGTERM);
  wait_signal();
}

void Shutdown::release_loop_objects() noexcept {
  signals_.reset();
  stages_.release();
}

// -- signals (loop thread) ------------------------------------------------------------------

void Shutdown::wait_signal() {
  signals_->async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    on_signal(sig);
    wait_signal();
  });
}

void Shutdown::on_signal(int sig) {
  std::unique_lock lk(stop_m_);
  if (booting_) {
    if (!pending_stop_) pending_stop_ = signal_stop_;
    lk.unlock();
    log_->warn("{}: signal {} while starting - shutting down once start() returns", id_, sig);
    return;
  }
  if (!stop_begun_ && life_.load() == State::running) {
    begin_locked(signal_stop_, false);
    spawn_stopper_locked();  // it closes the supervisor first: worker hooks stay off this thread
    lk.unlock();
    log_->warn("{}: signal {} - shutting down (warm stage; another signal skips to the next stage)", id_,
               sig);
    return;
  }
  const bool open = life_.load() == State::running;
  lk.unlock();
  if (open) {
    // A stop is still stopping the steps above the pool (a consumer or a
    // worker waiting for its running tasks, say): close to new work now
    // and skip the warm stage, so that those tasks are asked to stop and
    // the steps waiting for them can end. advance() before the posted
    // begin() is kept and applied when the warm stage begins.
    log_->warn("{}: signal {} - closing to new work and moving to the soft stage", id_, sig);
    close(false);
    stages_.advance();
  } else {
    log_->warn("{}: signal {} - moving to the next shutdown stage", id_, sig);
    stages_.advance();
  }
}

// -- StopStages::Listener (loop thread) ----------------------------------------------------

void Shutdown::stage_entered(StopStage s) {
  std::lock_guard lk(stop_m_);
  report_.stage = s;
}

void Shutdown::stop_requested(std::size_t n) {
  std::lock_guard lk(stop_m_);
  report_.stop_requested += n;
}

void Shutdown::abandoned(std::vector<TaskInfo> tasks) {
  std::lock_guard lk(stop_m_);
  report_.abandoned = std::move(tasks);
}

void Shutdown::drained() {
  std::lock_guard lk(stop_m_);
  drained_ = true;
  stop_cv_.notify_all();
}

}  // namespace atask::detail
