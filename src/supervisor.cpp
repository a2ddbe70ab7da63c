#include <atask/supervisor.hpp>

#include "detail/platform.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <unordered_map>

namespace asio = boost::asio;

namespace atask {

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

namespace {

PoolLimits limits_of(const SupervisorOptions& o) {
  return {.pool_size = o.pool_size,
          .reserve_normal = o.reserve_normal,
          .reserve_high = o.reserve_high,
          .min_threads = o.min_threads,
          .max_threads = o.max_threads};
}

const SupervisorOptions& validated(const SupervisorOptions& o) {
  validate(limits_of(o), "Supervisor::Supervisor()");
  auto fail = [](const std::string& why) { throw OptionsError("Supervisor::Supervisor() - " + why); };
  if (o.id.empty()) fail("id must not be empty");
  if (o.timeout_warning.count() < 0 || o.timeout_critical.count() < 0)
    fail("timeout_warning and timeout_critical must be >= 0");
  if (o.idle_timeout.count() < 0) fail("idle_timeout must be >= 0");
  // Checked here too so that the message names the call the user made.
  if (o.prespawn && o.min_threads == 0) fail("prespawn needs min_threads > 0 (the threads it starts)");
  if (o.history_size == 0) fail("history_size must be > 0");
  if (o.default_aloop.empty()) fail("default_aloop must name an aloop");
  return o;
}

// A timer can't take milliseconds::max(): treat anything past a century as "never".
bool forever(std::chrono::milliseconds d) {
  return d > std::chrono::hours(24 * 365 * 100);
}

}  // namespace

struct Supervisor::Impl final : detail::TaskObserver {
  enum class State : int { created, running, stopping, stopped };

  SupervisorOptions opt;
  std::shared_ptr<spdlog::logger> log;
  asio::io_context ctx{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;
  std::atomic<std::thread::id> thread_id{};
  ThreadPool pool;
  std::atomic<std::uint64_t> ids{0};
  std::atomic<State> state{State::created};

  // Aloops; stopped ones are kept (retired) so references stay valid.
  mutable std::mutex aloop_m;
  std::map<std::string, std::unique_ptr<Aloop>, std::less<>> aloops;
  std::vector<std::unique_ptr<Aloop>> retired;

  // Registry: active tasks (each holds a reference) and bounded history.
  mutable std::mutex reg_m;
  detail::TaskStateBase* live_head = nullptr;
  std::size_t live = 0;
  std::deque<TaskInfo> history;
  TaskCounters counters;
  std::size_t shutdown_canceled = 0;

  // Stop machinery. Stage functions run on the io_context thread only.
  std::mutex stop_m;
  std::condition_variable stop_cv;
  StopOptions stop_opts;
  StopStage stage = StopStage::none;  // io_context thread; copied to report under stop_m
  bool drained = false;               // under stop_m
  bool tearing = false, torn_down = false;
  StopReport report;  // under stop_m
  std::optional<asio::steady_timer> stage_timer;
  std::unordered_map<std::uint64_t, std::unique_ptr<asio::steady_timer>> delay_timers;
  std::atomic<int> delays_pending{0};
  std::optional<asio::signal_set> signals;

  explicit Impl(const SupervisorOptions& o)
      : opt(validated(o)),
        log(opt.logger ? opt.logger : detail::default_logger()),
        pool(PoolOptions{.limits = limits_of(opt),
                         .prespawn = opt.prespawn,
                         .idle_timeout = opt.idle_timeout,
                         .name = opt.id,
                         .on_error = {},
                         .logger = log}) {}

  const char* state_name() const {
    switch (state.load()) {
      case State::created:
        return "created";
      case State::running:
        return "running";
      case State::stopping:
        return "stopping";
      case State::stopped:
        return "stopped";
    }
    return "?";
  }

  bool on_own_thread() const {
    if (pool.on_pool_thread() || std::this_thread::get_id() == thread_id.load()) return true;
    std::lock_guard lk(aloop_m);
    for (auto& [n, a] : aloops)
      if (a->on_thread()) return true;
    return false;
  }

  // -- TaskObserver ------------------------------------------------------------
  void task_started(detail::TaskStateBase& t) noexcept override {
    if (opt.timeout_warning.count() == 0 && opt.timeout_critical.count() == 0) return;
    TaskInfo i = t.info();
    if (!i.queued_at || !i.started_at) return;
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(*i.started_at - *i.queued_at);
    auto call = [&](const std::function<void(const TaskInfo&)>& cb) {
      if (!cb) return;
      try {
        cb(i);
      } catch (...) {
        log->error("{}: timeout callback threw: {}", opt.id, detail::describe(std::current_exception()));
      }
    };
    if (opt.timeout_critical.count() > 0 && waited > opt.timeout_critical) {
      log->error("{}: task #{} ({}) waited {} ms before it started (critical: {} ms)", opt.id, i.id,
                 to_string(i.priority), waited.count(), opt.timeout_critical.count());
      call(opt.on_timeout_critical);
    } else if (opt.timeout_warning.count() > 0 && waited > opt.timeout_warning) {
      log->warn("{}: task #{} ({}) waited {} ms before it started (warning: {} ms)", opt.id, i.id,
                to_string(i.priority), waited.count(), opt.timeout_warning.count());
      call(opt.on_timeout_warning);
    }
  }

  void task_finished(detail::TaskStateBase& t, const TaskInfo& final_info) noexcept override {
    bool now_drained = false;
    TaskInfo i = final_info;
    {
      std::lock_guard lk(reg_m);
      if (t.reg_prev_)
        t.reg_prev_->reg_next_ = t.reg_next_;
      else
        live_head = t.reg_next_;
      if (t.reg_next_) t.reg_next_->reg_prev_ = t.reg_prev_;
      t.reg_prev_ = t.reg_next_ = nullptr;
      --live;
      const auto p = index(i.priority);
      switch (i.status) {
        case TaskStatus::completed:
          ++counters.completed[p];
          break;
        case TaskStatus::failed:
          ++counters.failed[p];
          break;
        default:
          ++counters.canceled[p];
          if (state.load() == State::stopping && !i.started_at) ++shutdown_canceled;
      }
      history.push_back(std::move(i));
      if (history.size() > opt.history_size) history.pop_front();
      now_drained = live == 0 && state.load() == State::stopping;
    }
    if (now_drained) asio::post(ctx, [this] { on_drained(); });
    t.release();  // the registry's reference; someone else still holds one
  }

  void task_cancel_pending(detail::TaskStateBase& t) noexcept override {
    if (t.kind() == TaskKind::thread) pool.remove(&t);
    if (delays_pending.load() > 0) {
      t.add_ref();
      asio::post(ctx, [this, r = detail::Ref<detail::TaskStateBase>::adopt(&t)] {
        if (auto it = delay_timers.find(r->id()); it != delay_timers.end()) it->second->cancel();
      });
    }
  }

  // -- registry ------------------------------------------------------------------
  template <class Fn>
  std::vector<detail::Ref<detail::TaskStateBase>> live_tasks(Fn&& pred) {
    std::vector<detail::Ref<detail::TaskStateBase>> out;
    std::lock_guard lk(reg_m);
    for (auto* t = live_head; t; t = t->reg_next_)
      if (pred(*t)) {
        t->add_ref();
        out.push_back(detail::Ref<detail::TaskStateBase>::adopt(t));
      }
    return out;
  }

  static bool pending(const detail::TaskStateBase& t) {
    auto s = t.status();
    return s == TaskStatus::queued || s == TaskStatus::delayed;
  }

  std::size_t cancel_pending_tasks(bool queued_too, const char* why) {
    auto ts = live_tasks([&](auto& t) {
      auto s = t.status();
      return s == TaskStatus::delayed || (queued_too && s == TaskStatus::queued);
    });
    std::size_t n = 0;
    for (auto& t : ts)
      n += t->cancel_pending(std::make_exception_ptr(TaskCanceled(
          "task #" + std::to_string(t->id()) + " was canceled: supervisor '" + opt.id + "' " + why)));
    return n;
  }

  // -- stop stages (io_context thread) -----------------------------------------------
  void begin_stop(const StopOptions& o) {
    {
      std::lock_guard lk(stop_m);
      std::lock_guard rl(reg_m);  // no task registers past this point
      if (state.load() != State::running) return;
      state.store(State::stopping);
      stop_opts = o;
    }
    log->info("{}: stopping (warm stage: {} queued tasks, up to {} ms)", opt.id,
              o.cancel_queued ? "canceling" : "draining",
              forever(o.warm_timeout) ? -1 : o.warm_timeout.count());
    pool.close(o.cancel_queued);
    cancel_pending_tasks(o.cancel_queued, "is stopping");
    asio::post(ctx, [this] { enter_warm(); });
  }

  void set_stage(StopStage s) {
    stage = s;
    std::lock_guard lk(stop_m);
    report.stage = s;
  }

  bool registry_empty() {
    std::lock_guard lk(reg_m);
    return live == 0;
  }

  void arm(std::chrono::milliseconds d, void (Impl::*next)()) {
    if (forever(d)) return;
    stage_timer.emplace(ctx, d);
    stage_timer->async_wait([this, next](boost::system::error_code ec) {
      if (!ec) (this->*next)();
    });
  }

  void enter_warm() {
    set_stage(StopStage::warm);
    if (registry_empty()) return drain_done();
    arm(stop_opts.warm_timeout, &Impl::enter_soft);
  }

  void enter_soft() {
    if (is_drained() || stage != StopStage::warm) return;
    if (stage_timer) stage_timer->cancel();
    set_stage(StopStage::soft);
    cancel_pending_tasks(true, "reached the soft shutdown stage");
    auto running = live_tasks([](auto& t) { return t.status() == TaskStatus::started; });
    log->warn("{}: soft stage: requesting stop of {} running tasks, up to {} ms", opt.id, running.size(),
              stop_opts.soft_timeout.count());
    for (auto& t : running) t->request_stop();
    {
      std::lock_guard lk(stop_m);
      report.stop_requested += running.size();
    }
    if (registry_empty()) return drain_done();
    arm(stop_opts.soft_timeout, &Impl::enter_cold);
  }

  void enter_cold() {
    if (is_drained() || stage != StopStage::soft) return;
    if (stage_timer) stage_timer->cancel();
    set_stage(StopStage::cold);
    auto left = live_tasks([](auto&) { return true; });
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
      if (state.load() == State::running) {
        log->warn("{}: signal {} - shutting down (warm stage; another signal skips to the next stage)",
                  opt.id, sig);
        begin_stop(opt.signal_stop);
      } else {
        log->warn("{}: signal {} - moving to the next shutdown stage", opt.id, sig);
        advance();
      }
      wait_signal();
    });
  }

  // Runs on the thread that waits for the stop, after the stages are done.
  void teardown() {
    const bool cold = stage == StopStage::cold;  // stages are over: no concurrent writer
    if (cold) {
      int left = pool.abandon();
      if (left > 0) log->error("{}: {} pool threads were left inside abandoned tasks", opt.id, left);
    } else {
      // Fire-and-forget post()s are not in the registry; give them the soft budget.
      auto budget = forever(stop_opts.soft_timeout) ? std::chrono::hours(24) : stop_opts.soft_timeout;
      if (pool.wait_idle(std::chrono::steady_clock::now() + budget)) {
        pool.stop(true);
      } else {
        int left = pool.abandon();
        log->error("{}: {} posted tasks still running at shutdown were abandoned", opt.id, left);
      }
    }
    std::vector<Aloop*> loops;
    {
      std::lock_guard lk(aloop_m);
      for (auto& [n, a] : aloops) loops.push_back(a.get());
    }
    for (auto* a : loops) a->stop();
    asio::post(ctx, [this] {
      signals.reset();
      stage_timer.reset();
      delay_timers.clear();
      work.reset();
    });
    if (thread.joinable()) thread.join();
    std::size_t canceled = 0;
    {
      std::lock_guard lk(reg_m);
      canceled = shutdown_canceled;
    }
    std::lock_guard sl(stop_m);  // never hold reg_m while taking stop_m: begin_stop nests them the other way
    report.canceled = canceled;
  }

  StopReport finish_stop() {
    std::unique_lock lk(stop_m);
    stop_cv.wait(lk, [&] { return drained; });
    if (tearing) {
      stop_cv.wait(lk, [&] { return torn_down; });
      StopReport r = report;
      r.completed = true;
      return r;
    }
    tearing = true;
    lk.unlock();
    teardown();
    lk.lock();
    torn_down = true;
    state.store(State::stopped);
    report.completed = true;
    stop_cv.notify_all();
    log->info("{}: stopped ({} stage, {} canceled, {} asked to stop, {} abandoned)", opt.id,
              to_string(report.stage), report.canceled, report.stop_requested, report.abandoned.size());
    return report;
  }

  Aloop& start_aloop_locked(const std::string& name) {
    auto [it, inserted] = aloops.emplace(name, std::make_unique<Aloop>(name));
    if (state.load() == State::running) it->second->start();
    return *it->second;
  }
};

Supervisor::Supervisor(SupervisorOptions options) : impl_(std::make_unique<Impl>(options)) {}

Supervisor::~Supervisor() {
  auto s = impl_->state.load();
  if (s == Impl::State::running || s == Impl::State::stopping) {
    if (impl_->on_own_thread()) {
      impl_->log->critical("{}: Supervisor destroyed from one of its own threads", impl_->opt.id);
      std::terminate();
    }
    stop();
  }
}

void Supervisor::start() {
  auto& d = *impl_;
  std::lock_guard lk(d.stop_m);
  if (d.state.load() != Impl::State::created)
    throw LifecycleError("Supervisor::start() - supervisor '" + d.opt.id + "' was already started" +
                         (d.state.load() == Impl::State::running ? "" : " and stopped; create a new one"));
  d.pool.start();
  d.work.emplace(d.ctx.get_executor());
  if (d.opt.handle_signals) {
    d.signals.emplace(d.ctx, SIGINT, SIGTERM);
    d.wait_signal();
  }
  d.thread = std::thread([&d] {
    d.thread_id.store(std::this_thread::get_id());
    detail::set_thread_name(d.opt.id + "-sv");
    for (;;) {
      try {
        d.ctx.run();
        return;
      } catch (...) {  // never let an exception take the loop down
        d.log->error("{}: supervisor loop handler threw: {}", d.opt.id,
                     detail::describe(std::current_exception()));
      }
    }
  });
  d.state.store(Impl::State::running);
  {
    std::lock_guard al(d.aloop_m);
    for (auto& [n, a] : d.aloops) a->start();
  }
  d.log->debug("{}: started (pool_size {}, reserve_normal {}, reserve_high {})", d.opt.id, d.opt.pool_size,
               d.opt.reserve_normal, d.opt.reserve_high);
}

StopReport Supervisor::stop(StopOptions o) {
  auto& d = *impl_;
  if (o.warm_timeout.count() < 0 || o.soft_timeout.count() < 0)
    throw OptionsError("Supervisor::stop() - timeouts must be >= 0");
  {
    std::lock_guard lk(d.stop_m);
    auto s = d.state.load();
    if (s == Impl::State::created) {
      d.state.store(Impl::State::stopped);
      d.drained = d.torn_down = d.tearing = true;
      d.report.completed = true;
      return d.report;
    }
    if (s == Impl::State::stopped) {
      StopReport r = d.report;
      r.already_stopped = true;
      return r;
    }
  }
  d.begin_stop(o);
  if (!o.wait || d.on_own_thread()) {
    std::lock_guard lk(d.stop_m);
    StopReport r = d.report;
    r.completed = false;
    return r;
  }
  return d.finish_stop();
}

StopReport Supervisor::block() {
  auto& d = *impl_;
  if (d.state.load() == Impl::State::created)
    throw LifecycleError("Supervisor::block() - supervisor '" + d.opt.id + "' is not started");
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
  std::lock_guard lk(d.reg_m);
  if (d.state.load() != Impl::State::running)
    throw LifecycleError("Supervisor::submit() - supervisor '" + d.opt.id + "' is " + d.state_name());
  t->set_observer(&d);
  t->add_ref();
  t->reg_next_ = d.live_head;
  if (d.live_head) d.live_head->reg_prev_ = t;
  d.live_head = t;
  ++d.live;
  ++d.counters.submitted[index(t->priority())];
}

void Supervisor::fail_launch(detail::TaskStateBase* t, std::exception_ptr e) noexcept {
  t->cancel_pending(std::move(e));
}

void Supervisor::launch_thread(detail::TaskStateBase* t, const TaskOptions& o) {
  auto& d = *impl_;
  if (o.delay.count() < 0) throw OptionsError("Supervisor::submit() - delay must be >= 0");
  if (o.delay.count() > 0)
    t->mark_delayed();
  else
    t->mark_queued();
  register_task(t);
  if (o.delay.count() == 0) {
    t->add_ref();       // the pool's
    d.pool.enqueue(t);  // on failure the pool discards it (canceled) and throws
    return;
  }
  ++d.delays_pending;
  t->add_ref();
  asio::post(d.ctx, [&d, r = detail::Ref<detail::TaskStateBase>::adopt(t), delay = o.delay]() mutable {
    auto id = r->id();
    auto& timer = d.delay_timers[id];
    timer = std::make_unique<asio::steady_timer>(d.ctx, delay);
    timer->async_wait([&d, r = std::move(r)](boost::system::error_code) mutable {
      d.delay_timers.erase(r->id());
      --d.delays_pending;
      // The slot is taken only now: a delayed task holds none while it waits.
      if (!r->try_enqueue_after_delay()) return;  // canceled meanwhile
      try {
        r->add_ref();
        d.pool.enqueue(r.get());
      } catch (const std::exception&) {  // stopping: the pool discarded it
      }
    });
  });
}

Aloop& Supervisor::create_aloop(const std::string& name, bool make_default) {
  auto& d = *impl_;
  if (name.empty()) throw Error("Supervisor::create_aloop() - the name must not be empty");
  auto s = d.state.load();
  if (s == Impl::State::stopping || s == Impl::State::stopped)
    throw LifecycleError("Supervisor::create_aloop() - supervisor '" + d.opt.id + "' is " + d.state_name());
  std::lock_guard lk(d.aloop_m);
  if (d.aloops.count(name)) throw Error("Supervisor::create_aloop() - an aloop named '" + name + "' exists");
  Aloop& a = d.start_aloop_locked(name);
  if (make_default) d.opt.default_aloop = name;
  return a;
}

Aloop& Supervisor::aloop(std::string_view name) {
  auto& d = *impl_;
  std::lock_guard lk(d.aloop_m);
  auto it = d.aloops.find(name);
  if (it == d.aloops.end()) throw Error("Supervisor::aloop() - no aloop named '" + std::string(name) + "'");
  return *it->second;
}

Aloop& Supervisor::default_aloop() {
  auto& d = *impl_;
  std::lock_guard lk(d.aloop_m);
  if (auto it = d.aloops.find(d.opt.default_aloop); it != d.aloops.end()) return *it->second;
  auto s = d.state.load();
  if (s == Impl::State::stopping || s == Impl::State::stopped)
    throw LifecycleError("Supervisor::default_aloop() - supervisor '" + d.opt.id + "' is " + d.state_name());
  return d.start_aloop_locked(d.opt.default_aloop);
}

void Supervisor::stop_aloop(std::string_view name) {
  auto& d = *impl_;
  Aloop* a = nullptr;
  {
    std::lock_guard lk(d.aloop_m);
    auto it = d.aloops.find(name);
    if (it == d.aloops.end())
      throw Error("Supervisor::stop_aloop() - no aloop named '" + std::string(name) + "'");
    a = it->second.get();
    d.retired.push_back(std::move(it->second));
    d.aloops.erase(it);
  }
  a->stop();
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
  {
    std::lock_guard lk(d.aloop_m);
    for (auto& [n, a] : d.aloops) i.aloops.push_back({n, n == d.opt.default_aloop, a->running()});
  }
  std::lock_guard lk(d.reg_m);
  i.tasks = d.counters;
  i.active_tasks = d.live;
  return i;
}

std::vector<TaskInfo> Supervisor::tasks(std::optional<TaskStatus> only) const {
  auto& d = *impl_;
  std::vector<TaskInfo> out;
  std::lock_guard lk(d.reg_m);
  for (auto* t = d.live_head; t; t = t->reg_next_) {
    TaskInfo i = t->info();
    if (!only || i.status == *only) out.push_back(std::move(i));
  }
  for (const auto& i : d.history)
    if (!only || i.status == *only) out.push_back(i);
  return out;
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

}  // namespace atask
