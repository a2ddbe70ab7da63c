#include <atask/supervisor.hpp>

#include "detail/platform.hpp"
#include "detail/process_pool.hpp"
#include "detail/step_graph.hpp"
#include "supervisor/aloop_set.hpp"
#include "supervisor/delay_queue.hpp"
#include "supervisor/lifecycle.hpp"
#include "supervisor/options.hpp"
#include "supervisor/task_registry.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>

namespace asio = boost::asio;

namespace atask {

using detail::forever;
using detail::joined;
using detail::limits_of;
using detail::resolve;
using detail::StepSlot;
using detail::StepState;
using detail::to_cstr;
using detail::validated;

std::string_view to_string(StopStage s) noexcept {
  switch (s) {
    case StopStage::none:
      return "none";
    case StopStage::warm:
      return "warm";
    case StopStage::soft:
      return "soft";
    case StopStage::cold:
      return "cold";
  }
  return "?";
}

// How the pieces fit (docs/steps.md has the user's view):
//  - start() walks the boot order on the caller's thread; the "pool" step
//    makes the supervisor `running` (it takes tasks from then on).
//  - A stop begins once (stop_begun) and is carried out by one stopper
//    thread, which runs every started step's stop hook in reverse order;
//    the first thread that waits for the stop joins it (finish_stop).
//  - close() ends `running`: the warm stage starts, the stages run on the
//    loop as timers. A stop that can wait closes in the "pool" step's stop,
//    so the steps above the pool stop while work is still taken; one that
//    cannot wait closes at once, before the stopper walks.
struct Supervisor::Impl {
  using State = detail::Lifecycle::State;

  Supervisor* self;
  SupervisorOptions opt;
  std::shared_ptr<spdlog::logger> log;
  asio::io_context ctx{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;
  std::atomic<std::thread::id> thread_id{};
  ThreadPool pool;
  std::atomic<std::uint64_t> ids{0};
  detail::Lifecycle state;

  detail::AloopSet aloops;
  detail::TaskRegistry tasks;

  // Lifecycle, under stop_m. Steps are in registration order (built-ins
  // first) and do not change once start() was called; `order` is the boot
  // order start() fixed; `started` is written by the start() thread, then
  // read by the stopper, which exists only once start() stopped walking.
  mutable std::mutex stop_m;
  std::condition_variable stop_cv;
  std::vector<StepSlot> steps;
  std::vector<std::size_t> order, started;
  bool start_called = false, booting = false;
  std::atomic<std::thread::id> boot_thread{};
  std::optional<StopOptions> pending_stop;  // asked for while booting
  bool stop_begun = false, graceful = false;
  std::optional<std::chrono::steady_clock::time_point> warm_deadline;  // nullopt: none
  std::thread stopper;
  std::atomic<std::thread::id> stopper_id{};
  bool walk_done = false, join_claimed = false, joined = false;

  // Stop stages. Stage functions run on the io_context thread only.
  StopOptions stop_opts;              // under stop_m; fixed when the stop begins
  StopStage stage = StopStage::none;  // io_context thread; copied to report under stop_m
  int advances_pending = 0;           // io_context thread: signals that came before the warm stage began
  bool drained = false;               // under stop_m
  StopReport report;                  // under stop_m
  std::optional<asio::steady_timer> stage_timer;
  detail::DelayQueue delays{ctx};
  std::optional<asio::signal_set> signals;
  std::shared_ptr<detail::WorkerRegistry> workers;
  // Declared after ctx: destroyed before it (its sockets and timers use it).
  std::unique_ptr<detail::ProcessPool> procs;

  Impl(Supervisor* owner, const SupervisorOptions& o)
      : self(owner),
        opt(validated(o)),
        log(opt.logger ? opt.logger : detail::default_logger()),
        pool(PoolOptions{.limits = limits_of(opt),
                         .prespawn = opt.prespawn,
                         .idle_timeout = opt.idle_timeout,
                         .name = opt.id,
                         .on_error = {},
                         .logger = log}),
        aloops(state, opt.id, opt.default_aloop),
        tasks(opt, log,
              {.dequeue =
                   [this](detail::TaskStateBase& t) {
                     if (t.kind() == TaskKind::thread) pool.remove(&t);  // process tasks leave their queue themselves
                     delays.cancel(t);
                   },
               .drained = [this] { asio::post(ctx, [this] { on_drained(); }); }}),
        workers(std::make_shared<detail::WorkerRegistry>(owner)) {
    // First, before anything could start a thread: the fork server.
    if (opt.processes.pool_size > 0) {
      try {
        procs = std::make_unique<detail::ProcessPool>(opt.processes, opt.id, log);
      } catch (const std::system_error& e) {
        throw Error("Supervisor::Supervisor() - cannot start the process pool's fork server: " +
                    std::string(e.what()));
      }
    }
    // The built-in steps. "pool" depends on "aloops" (and "processes")
    // because its stop is the staged shutdown of every task, coroutine and
    // process ones included: what runs them must outlive it.
    auto builtin = [&](const char* name, std::vector<std::string> deps, void (Impl::*up)(),
                       void (Impl::*down)()) {
      Step s{.name = name, .depends_on = std::move(deps), .start = {}, .stop = {}};
      if (up) s.start = [this, up](Supervisor&) { (this->*up)(); };
      if (down) s.stop = [this, down](Supervisor&) { (this->*down)(); };
      steps.push_back({std::move(s), true});
    };
    builtin("loop", {}, &Impl::loop_start, &Impl::loop_stop);
    builtin("aloops", {"loop"}, &Impl::aloops_start, &Impl::aloops_stop);
    if (procs) {
      builtin("processes", {"loop"}, &Impl::processes_start, &Impl::processes_stop);
      builtin("pool", {"loop", "aloops", "processes"}, &Impl::pool_start, &Impl::pool_stop);
    } else {
      builtin("pool", {"loop", "aloops"}, &Impl::pool_start, &Impl::pool_stop);
    }
    builtin("workers", {"pool", "aloops"}, nullptr, &Impl::workers_stop);
  }

  const char* state_name() const { return state.name(); }

  // The loop, the stopper, a pool thread, an aloop, or the thread inside
  // start(): none of them may wait for the shutdown.
  bool on_own_thread() const {
    const auto me = std::this_thread::get_id();
    if (pool.on_pool_thread() || me == thread_id.load() || me == stopper_id.load() ||
        me == boot_thread.load())
      return true;
    return aloops.on_thread();
  }

  // -- built-in steps ----------------------------------------------------------------
  void loop_start() {
    work.emplace(ctx.get_executor());
    if (opt.handle_signals) {
      signals.emplace(ctx, SIGINT, SIGTERM);
      wait_signal();
    }
    thread = std::thread([this] {
      thread_id.store(std::this_thread::get_id());
      detail::set_thread_name(opt.id + "-sv");
      for (;;) {
        try {
          ctx.run();
          return;
        } catch (...) {  // never let an exception take the loop down
          log->error("{}: supervisor loop handler threw: {}", opt.id,
                     detail::describe(std::current_exception()));
        }
      }
    });
    thread_id.store(thread.get_id());  // known once start() returns, not only once the thread runs
  }

  // Last: the stages of the "pool" step ran on this loop.
  void loop_stop() {
    asio::post(ctx, [this] {
      signals.reset();
      stage_timer.reset();
      delays.clear();
      work.reset();
    });
    if (thread.joinable()) thread.join();
    thread_id.store({});  // a joined thread's id may be given to a new thread
  }

  void aloops_start() { aloops.start_all(); }

  // After "pool": coroutine tasks have been drained (or abandoned) by then;
  // those still suspended end canceled when their aloop goes.
  void aloops_stop() { aloops.stop_all(); }

  void processes_start() { procs->start(ctx); }

  // After "pool": every process task has ended (or was abandoned) by then.
  // The children and the fork server are killed and reaped.
  void processes_stop() { procs->stop(); }

  void pool_start() {
    pool.start();
    std::lock_guard lk(stop_m);
    tasks.open();
    state.store(State::running);
  }

  // The staged shutdown of every task (warm, soft, cold on the loop), then
  // the pool's threads end.
  void pool_stop() {
    close(true);
    StopStage reached;
    std::chrono::milliseconds soft;
    {
      std::unique_lock lk(stop_m);
      stop_cv.wait(lk, [&] { return drained; });
      reached = report.stage;
      soft = stop_opts.soft_timeout;
    }
    if (reached == StopStage::cold) {
      int left = pool.abandon();
      if (left > 0) log->error("{}: {} pool threads were left inside abandoned tasks", opt.id, left);
      return;
    }
    // Fire-and-forget post()s are not in the registry; give them the soft budget.
    auto budget = forever(soft) ? std::chrono::hours(24) : soft;
    if (pool.wait_idle(std::chrono::steady_clock::now() + budget)) {
      pool.stop(true);
    } else {
      int left = pool.abandon();
      log->error("{}: {} posted tasks still running at shutdown were abandoned", opt.id, left);
    }
  }

  // While the supervisor still takes work (a stop that can wait), workers
  // finish their run and drain queues that drain, within the warm budget.
  // Once it is closed they are only told to stop: their runs are tasks,
  // which the stages bound.
  void workers_stop() {
    const bool open = state.load() == State::running;
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::now();
    if (open) {
      std::lock_guard lk(stop_m);
      deadline = warm_deadline.value_or(std::chrono::steady_clock::time_point::max());
    }
    auto left = workers->stop_all(deadline);
    if (open)
      for (auto& n : left) log->warn("{}: worker '{}' did not stop within the warm stage", opt.id, n);
  }

  // -- stopping ----------------------------------------------------------------------
  // Under stop_m; once per supervisor.
  void begin_locked(const StopOptions& o, bool can_wait) {
    stop_begun = true;
    graceful = can_wait;
    stop_opts = o;
    if (!forever(o.warm_timeout)) warm_deadline = std::chrono::steady_clock::now() + o.warm_timeout;
  }

  // Under stop_m, after begin_locked().
  void spawn_stopper_locked() {
    stopper = std::thread([this] { walk(); });
    stopper_id.store(stopper.get_id());
  }

  // Ends `running`: no new tasks, the warm stage begins. Any thread, not
  // under stop_m; only the first call does something.
  bool close(bool tell_workers) {
    StopOptions o;
    std::chrono::milliseconds warm_left{-1};
    {
      std::lock_guard lk(stop_m);
      if (state.load() != State::running) return false;
      state.store(State::stopping);
      tasks.close();  // no task registers past this point
      o = stop_opts;
      if (warm_deadline)
        warm_left = std::max(
            std::chrono::milliseconds(0),
            std::chrono::ceil<std::chrono::milliseconds>(*warm_deadline - std::chrono::steady_clock::now()));
    }
    // Workers still active are told to stop, without waiting, before the
    // pool closes: a worker whose next run is refused would log an error.
    if (tell_workers) workers->stop_all(std::chrono::steady_clock::now());
    log->info("{}: stopping (warm stage: {} queued tasks, up to {} ms)", opt.id,
              o.cancel_queued ? "canceling" : "draining", warm_left.count());
    pool.close(o.cancel_queued);
    tasks.cancel_pending(o.cancel_queued, "is stopping");
    asio::post(ctx, [this] { enter_warm(); });
    return true;
  }

  // The stopper thread: every started step's stop hook, in reverse order.
  void walk() {
    stopper_id.store(std::this_thread::get_id());  // before any hook runs (the spawner stores it too)
    detail::set_thread_name(opt.id + "-stop");
    if (!graceful) close(true);  // begun by stop(wait=false) on the loop or a signal
    for (auto it = started.rbegin(); it != started.rend(); ++it) {
      auto& slot = steps[*it];
      log->debug("{}: stopping step '{}'", opt.id, slot.step.name);
      try {
        if (slot.step.stop) slot.step.stop(*self);
      } catch (...) {
        log->error("{}: step '{}': its stop hook threw: {} - stopping the others", opt.id, slot.step.name,
                   detail::describe(std::current_exception()));
      }
      std::lock_guard lk(stop_m);
      slot.state = StepState::stopped;
    }
    const std::size_t canceled = tasks.shutdown_canceled();
    std::lock_guard lk(stop_m);  // never hold reg_m while taking stop_m: close() nests them the other way
    report.canceled = canceled;
    report.completed = true;
    state.store(State::stopped);
    log->info("{}: stopped ({} stage, {} canceled, {} asked to stop, {} abandoned)", opt.id,
              to_string(report.stage), report.canceled, report.stop_requested, report.abandoned.size());
    walk_done = true;
    stop_cv.notify_all();  // nothing of *this is touched after the unlock: the joiner may free it
  }

  // Waits for the stopper's walk; the first caller joins the stopper.
  StopReport finish_stop() {
    std::unique_lock lk(stop_m);
    stop_cv.wait(lk, [&] { return walk_done; });
    if (!join_claimed) {
      join_claimed = true;
      lk.unlock();
      if (stopper.joinable()) stopper.join();
      stopper_id.store({});  // a joined thread's id may be given to a new thread
      lk.lock();
      joined = true;
      stop_cv.notify_all();
    } else {
      stop_cv.wait(lk, [&] { return joined; });
    }
    StopReport r = report;
    r.completed = true;
    return r;
  }

  StopReport report_now(bool completed) {
    std::lock_guard lk(stop_m);
    StopReport r = report;
    r.completed = completed;
    return r;
  }

  // -- stop stages (io_context thread) -----------------------------------------------
  void set_stage(StopStage s) {
    stage = s;
    std::lock_guard lk(stop_m);
    report.stage = s;
  }

  void arm(std::chrono::milliseconds d, void (Impl::*next)()) {
    if (forever(d)) return;
    arm_at(std::chrono::steady_clock::now() + d, next);
  }

  void arm_at(std::chrono::steady_clock::time_point when, void (Impl::*next)()) {
    stage_timer.emplace(ctx, when);
    stage_timer->async_wait([this, next](boost::system::error_code ec) {
      if (!ec) (this->*next)();
    });
  }

  void enter_warm() {
    set_stage(StopStage::warm);
    if (tasks.empty()) return drain_done();
    if (advances_pending > 0) {
      --advances_pending;
      return enter_soft();
    }
    std::optional<std::chrono::steady_clock::time_point> deadline;
    {
      std::lock_guard lk(stop_m);
      deadline = warm_deadline;
    }
    // The warm stage began with the stop: steps above the pool may have
    // used part of it already.
    if (deadline) arm_at(*deadline, &Impl::enter_soft);
  }

  void enter_soft() {
    if (is_drained() || stage != StopStage::warm) return;
    if (stage_timer) stage_timer->cancel();
    set_stage(StopStage::soft);
    tasks.cancel_pending(true, "reached the soft shutdown stage");
    auto running = tasks.live_tasks([](auto& t) { return t.status() == TaskStatus::started; });
    std::chrono::milliseconds soft;
    {
      std::lock_guard lk(stop_m);
      soft = stop_opts.soft_timeout;
    }
    log->warn("{}: soft stage: requesting stop of {} running tasks, up to {} ms", opt.id, running.size(),
              soft.count());
    for (auto& t : running) t->request_stop();
    {
      std::lock_guard lk(stop_m);
      report.stop_requested += running.size();
    }
    if (tasks.empty()) return drain_done();
    if (advances_pending > 0) {
      --advances_pending;
      return enter_cold();
    }
    arm(soft, &Impl::enter_cold);
  }

  void enter_cold() {
    if (is_drained() || stage != StopStage::soft) return;
    if (stage_timer) stage_timer->cancel();
    set_stage(StopStage::cold);
    auto left = tasks.live_tasks([](auto&) { return true; });
    std::vector<TaskInfo> infos;
    for (auto& t : left) {
      TaskInfo i = t->info();
      log->error("{}: cold stage: abandoning task #{} ({}, {}, status {})", opt.id, i.id,
                 i.name.empty() ? "unnamed" : i.name, to_string(i.kind), to_string(i.status));
      t->abandon(std::make_exception_ptr(TaskAbandoned("task #" + std::to_string(i.id) +
                                                       " was abandoned by the cold shutdown of supervisor '" +
                                                       opt.id + "'")));
      infos.push_back(std::move(i));
    }
    {
      std::lock_guard lk(stop_m);
      report.abandoned = std::move(infos);
    }
    drain_done();
  }

  void advance() {
    if (stage == StopStage::warm)
      enter_soft();
    else if (stage == StopStage::soft)
      enter_cold();
    else if (stage == StopStage::none)
      ++advances_pending;  // closed, but the warm stage has not begun yet: skip it when it does
  }

  void on_drained() {
    if (stage != StopStage::none) drain_done();
  }

  bool is_drained() {
    std::lock_guard lk(stop_m);
    return drained;
  }

  void drain_done() {
    if (stage_timer) stage_timer->cancel();
    std::lock_guard lk(stop_m);
    if (drained) return;
    drained = true;
    stop_cv.notify_all();
  }

  void wait_signal() {
    signals->async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      on_signal(sig);
      wait_signal();
    });
  }

  void on_signal(int sig) {
    std::unique_lock lk(stop_m);
    if (booting) {
      if (!pending_stop) pending_stop = opt.signal_stop;
      lk.unlock();
      log->warn("{}: signal {} while starting - shutting down once start() returns", opt.id, sig);
      return;
    }
    if (!stop_begun && state.load() == State::running) {
      begin_locked(opt.signal_stop, false);
      spawn_stopper_locked();  // it closes the supervisor first: worker hooks stay off this thread
      lk.unlock();
      log->warn("{}: signal {} - shutting down (warm stage; another signal skips to the next stage)", opt.id,
                sig);
      return;
    }
    const bool open = state.load() == State::running;
    lk.unlock();
    if (open) {
      // A stop that waits is stopping the steps above the pool: take no
      // more work from now on.
      log->warn("{}: signal {} - closing to new work now", opt.id, sig);
      close(false);
    } else {
      log->warn("{}: signal {} - moving to the next shutdown stage", opt.id, sig);
      advance();
    }
  }

  // Registers a pool or process task and queues it with `enqueue` - at
  // once, or after its delay (holding no slot meanwhile). A template: the
  // common case, no delay, calls `enqueue` without type-erasing it.
  template <class Enqueue>
  void launch(detail::TaskStateBase* t, const TaskOptions& o, Enqueue enqueue) {
    if (o.delay.count() < 0) throw OptionsError("Supervisor::submit() - delay must be >= 0");
    if (o.delay.count() > 0)
      t->mark_delayed();
    else
      t->mark_queued();
    self->register_task(t);
    if (o.delay.count() == 0) return enqueue();
    t->add_ref();
    delays.add(detail::Ref<detail::TaskStateBase>::adopt(t), o.delay, std::move(enqueue));
  }
};

Supervisor::Supervisor(SupervisorOptions options) : impl_(std::make_unique<Impl>(this, options)) {}

Supervisor::~Supervisor() {
  auto& d = *impl_;
  bool unfinished;
  {
    std::lock_guard lk(d.stop_m);
    unfinished = d.start_called && !d.joined;
  }
  if (unfinished) {
    if (d.on_own_thread()) {
      d.log->critical("{}: Supervisor destroyed from one of its own threads", d.opt.id);
      std::terminate();
    }
    stop();
  }
  d.workers->detach();
}

void Supervisor::add_step(Step step) {
  auto& d = *impl_;
  std::lock_guard lk(d.stop_m);
  if (d.start_called || d.state.load() != Impl::State::created)
    throw LifecycleError("Supervisor::add_step() - supervisor '" + d.opt.id +
                         "' was already started; add steps before start()");
  if (step.name.empty()) throw OptionsError("Supervisor::add_step() - the step name must not be empty");
  for (auto& s : d.steps)
    if (s.step.name == step.name)
      throw OptionsError("Supervisor::add_step() - a step named '" + step.name + "' exists" +
                         (s.builtin ? " (a built-in step)" : ""));
  d.steps.push_back({std::move(step), false});
}

std::vector<std::string> Supervisor::boot_order() const {
  auto& d = *impl_;
  std::lock_guard lk(d.stop_m);
  auto order = d.start_called && !d.order.empty() ? d.order : resolve(d.steps, "Supervisor::boot_order()");
  std::vector<std::string> names;
  for (auto i : order) names.push_back(d.steps[i].step.name);
  return names;
}

void Supervisor::start() {
  auto& d = *impl_;
  {
    std::lock_guard lk(d.stop_m);
    if (d.start_called || d.state.load() != Impl::State::created)
      throw LifecycleError(
          "Supervisor::start() - supervisor '" + d.opt.id + "' was already started" +
          (d.state.load() == Impl::State::running && !d.stop_begun ? "" : " and stopped; create a new one"));
    d.order =
        resolve(d.steps, "Supervisor::start()");  // before anything starts: the supervisor stays created
    d.start_called = true;
    d.booting = true;
    d.boot_thread.store(std::this_thread::get_id());
  }
  d.log->debug("{}: boot order: {}", d.opt.id, joined(d.steps, d.order));
  std::exception_ptr failure;
  std::string failed;
  for (auto i : d.order) {
    auto& slot = d.steps[i];
    {
      std::lock_guard lk(d.stop_m);
      if (d.pending_stop) break;  // a stop came while starting: start no more
    }
    d.log->debug("{}: starting step '{}'", d.opt.id, slot.step.name);
    try {
      if (slot.step.start) slot.step.start(*this);
    } catch (...) {
      failure = std::current_exception();
      failed = slot.step.name;
      std::lock_guard lk(d.stop_m);
      slot.state = StepState::failed;
      break;
    }
    std::lock_guard lk(d.stop_m);
    slot.state = StepState::running;
    d.started.push_back(i);
  }

  std::unique_lock lk(d.stop_m);
  d.booting = false;
  d.boot_thread.store({});
  d.stop_cv.notify_all();  // stop() calls that waited for start() to end
  if (failure) {
    const std::string why = detail::describe(failure);
    const auto n = d.started.size();
    d.begin_locked(StopOptions{}, true);
    d.spawn_stopper_locked();
    lk.unlock();
    d.log->error("{}: step '{}' failed to start: {} - stopping the {} steps started before it", d.opt.id,
                 failed, why, n);
    d.finish_stop();
    throw Error("Supervisor::start() - step '" + failed + "' failed to start: " + why + " (the " +
                std::to_string(n) + " steps started before it were stopped)");
  }
  if (d.pending_stop) {
    const StopOptions o = *d.pending_stop;
    d.begin_locked(o, false);
    lk.unlock();
    d.log->info("{}: a stop was requested while starting - stopping", d.opt.id);
    d.close(true);
    lk.lock();
    d.spawn_stopper_locked();
    return;
  }
  lk.unlock();
  d.log->debug("{}: started (pool_size {}, reserve_normal {}, reserve_high {})", d.opt.id, d.opt.pool_size,
               d.opt.reserve_normal, d.opt.reserve_high);
}

StopReport Supervisor::stop(StopOptions o) {
  auto& d = *impl_;
  if (o.warm_timeout.count() < 0 || o.soft_timeout.count() < 0)
    throw OptionsError("Supervisor::stop() - timeouts must be >= 0");
  const bool own = d.on_own_thread();
  const bool can_wait = o.wait && !own;
  std::unique_lock lk(d.stop_m);
  for (;;) {
    if (d.joined) {
      StopReport r = d.report;
      r.already_stopped = true;
      return r;
    }
    if (!d.start_called) {  // never started: nothing to stop, and no start() after this
      d.start_called = true;
      d.state.store(Impl::State::stopped);
      d.walk_done = d.join_claimed = d.joined = true;
      d.report.completed = true;
      return d.report;
    }
    if (!d.booting) break;
    if (own) {  // start() (or something it waits for) asked: done once its current step returns
      if (!d.pending_stop) d.pending_stop = o;
      StopReport r = d.report;
      r.completed = false;
      return r;
    }
    d.stop_cv.wait(lk, [&] { return !d.booting; });
  }
  if (d.stop_begun) {  // another stop is under way: it decides how
    lk.unlock();
    return can_wait ? d.finish_stop() : d.report_now(false);
  }
  d.begin_locked(o, can_wait);
  if (can_wait) {
    d.spawn_stopper_locked();
    lk.unlock();
    return d.finish_stop();
  }
  // Cannot wait: closed to new work before this returns - unless called on
  // the loop itself, where the stopper closes (worker hooks are user code).
  if (std::this_thread::get_id() != d.thread_id.load()) {
    lk.unlock();
    d.close(true);
    lk.lock();
  }
  d.spawn_stopper_locked();
  StopReport r = d.report;
  r.completed = false;
  return r;
}

StopReport Supervisor::block() {
  auto& d = *impl_;
  {
    std::lock_guard lk(d.stop_m);
    if (!d.start_called)
      throw LifecycleError("Supervisor::block() - supervisor '" + d.opt.id + "' is not started");
  }
  if (d.on_own_thread())
    throw LifecycleError(
        "Supervisor::block() - called from one of the supervisor's own threads; it would wait for itself");
  return d.finish_stop();
}

bool Supervisor::is_running() const noexcept {
  return impl_->state.load() == Impl::State::running;
}
const std::string& Supervisor::id() const noexcept {
  return impl_->opt.id;
}

void Supervisor::check_running(const char* call) const {
  auto s = impl_->state.load();
  if (s != Impl::State::running)
    throw LifecycleError(std::string(call) + " - supervisor '" + impl_->opt.id + "' is " +
                         impl_->state_name());
}

std::uint64_t Supervisor::next_id() noexcept {
  return impl_->ids.fetch_add(1, std::memory_order_relaxed) + 1;
}

void Supervisor::register_task(detail::TaskStateBase* t) {
  auto& d = *impl_;
  if (!d.tasks.add(t))
    throw LifecycleError("Supervisor::submit() - supervisor '" + d.opt.id + "' is " + d.state_name());
}

void Supervisor::fail_launch(detail::TaskStateBase* t, std::exception_ptr e) noexcept {
  t->cancel_pending(std::move(e));
}

void Supervisor::launch_thread(detail::TaskStateBase* t, const TaskOptions& o) {
  impl_->launch(t, o, [t, &pool = impl_->pool] {
    t->add_ref();     // the pool's
    pool.enqueue(t);  // on failure the pool discards it (canceled) and throws
  });
}

void Supervisor::launch_process(detail::ProcessJob& job, const TaskOptions& o) {
  auto& d = *impl_;
  if (!d.procs)
    throw LifecycleError("Supervisor::submit() - supervisor '" + d.opt.id +
                         "' has no process pool (set SupervisorOptions::processes.pool_size)");
  job.pool = d.procs.get();
  d.launch(&job.task(), o, [j = &job, procs = d.procs.get()] { procs->enqueue(*j); });  // on failure: canceled, throws
}

Aloop& Supervisor::create_aloop(const std::string& name, bool make_default) {
  return impl_->aloops.create(name, make_default);
}
Aloop& Supervisor::aloop(std::string_view name) {
  return impl_->aloops.find(name);
}
Aloop& Supervisor::default_aloop() {
  return impl_->aloops.default_aloop();
}
void Supervisor::stop_aloop(std::string_view name) {
  impl_->aloops.stop(name);
}

Aloop& Supervisor::aloop_for(const TaskOptions& o) {
  return o.aloop.empty() ? default_aloop() : aloop(o.aloop);
}

void Supervisor::resize(const PoolLimits& limits) {
  validate(limits, "Supervisor::resize()");
  impl_->pool.resize(limits);
}

SupervisorInfo Supervisor::info() const {
  auto& d = *impl_;
  SupervisorInfo i;
  i.id = d.opt.id;
  i.state = d.state_name();
  i.pool = d.pool.info();
  if (d.procs) i.processes = d.procs->info();
  i.aloops = d.aloops.infos();
  {
    std::lock_guard lk(d.stop_m);
    auto add = [&](const StepSlot& s) {
      i.steps.push_back({s.step.name, s.step.depends_on, s.builtin, to_cstr(s.state)});
    };
    if (!d.order.empty())
      for (auto k : d.order) add(d.steps[k]);
    else
      for (auto& s : d.steps) add(s);
  }
  d.tasks.fill(i.tasks, i.active_tasks);
  return i;
}

TaskMetrics Supervisor::task_metrics() const {
  return impl_->tasks.metrics();
}

std::vector<TaskInfo> Supervisor::tasks(std::optional<TaskStatus> only) const {
  return impl_->tasks.list(only);
}

std::vector<WorkerInfo> Supervisor::workers() const {
  return impl_->workers->infos();
}
const std::shared_ptr<detail::WorkerRegistry>& Supervisor::worker_registry() const noexcept {
  return impl_->workers;
}

boost::asio::io_context& Supervisor::io_context() {
  return impl_->ctx;
}
ThreadPool& Supervisor::pool() {
  return impl_->pool;
}
spdlog::logger& Supervisor::logger() const {
  return *impl_->log;
}
std::shared_ptr<spdlog::logger> Supervisor::logger_ptr() const {
  return impl_->log;
}

}  // namespace atask
