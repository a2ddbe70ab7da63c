// The supervisor is a composition: this file builds its parts, wires them
// together and forwards the public calls to them. The parts, in
// src/supervisor/, each with at most one lock of its own:
//   options           option checks                                     no lock
//   task_registry     active tasks, history, counters, histograms;
//                     the TaskObserver of every task                    lock reg_m
//   shutdown          steps, boot walk, stopper thread, closing,
//                     signals, stop reports                             lock stop_m
//   stop_stages       the warm / soft / cold stages                     loop thread only
//   aloop_set         named aloops, the default, retired ones           lock aloop_m
//   delay_queue       timers of delayed tasks                           loop thread only
//   builtin_steps     the loop, aloops, processes, pool, workers steps  no lock
//
// Lock order (this is the reference; docs/foundation.md repeats it):
//   stop_m (Shutdown) before reg_m (TaskRegistry). Shutdown::open() and
//   close() take reg_m inside stop_m; never hold reg_m while taking stop_m.
//   aloop_m (AloopSet) nests with neither: it is taken alone.
//   No part holds one of the three while a step hook or a user callback
//   runs.

#include <atask/supervisor/supervisor.hpp>
#include <atask/supervisor/detail/worker_registry.hpp>

#include "util/platform.hpp"
#include "process/process_pool.hpp"
#include "supervisor/aloop_set.hpp"
#include "supervisor/builtin_steps.hpp"
#include "supervisor/delay_queue.hpp"
#include "supervisor/lifecycle.hpp"
#include "supervisor/options.hpp"
#include "supervisor/shutdown.hpp"
#include "supervisor/task_registry.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <optional>
#include <system_error>

namespace asio = boost::asio;

namespace atask {

struct Supervisor::Impl {
  Supervisor* self;
  SupervisorOptions opt;
  std::shared_ptr<spdlog::logger> log;
  asio::io_context ctx{1};
  ThreadPool pool;
  std::atomic<std::uint64_t> ids{0};
  detail::Lifecycle life;
  std::shared_ptr<detail::WorkerRegistry> workers;
  detail::AloopSet aloops;
  detail::TaskRegistry tasks;
  detail::Shutdown shutdown;
  detail::DelayQueue delays{ctx};
  // Declared after ctx: destroyed before it (its sockets and timers use it).
  std::unique_ptr<detail::ProcessPool> procs;
  std::optional<detail::BuiltinSteps> builtin;  // after procs: it knows whether there is one

  Impl(Supervisor* owner, const SupervisorOptions& o)
      : self(owner),
        opt(detail::validated(o)),
        log(opt.logger ? opt.logger : detail::default_logger()),
        pool(PoolOptions{.limits = detail::limits_of(opt),
                         .prespawn = opt.prespawn,
                         .idle_timeout = opt.idle_timeout,
                         .name = opt.id,
                         .on_error = {},
                         .logger = log}),
        workers(std::make_shared<detail::WorkerRegistry>(owner)),
        aloops(life, opt.id, opt.default_aloop),
        tasks(opt, log,
              {.dequeue =
                   [this](detail::TaskStateBase& t) {
                     // Process tasks leave their queue themselves.
                     if (t.kind() == TaskKind::thread) pool.remove(&t);
                     delays.cancel(t);
                   },
               .drained = [this] { asio::post(ctx, [this] { shutdown.tasks_drained(); }); }}),
        shutdown(*owner, opt, log, ctx, life, tasks, pool, *workers) {
    // First, before anything could start a thread: the fork server.
    if (opt.processes.pool_size > 0) {
      try {
        procs = std::make_unique<detail::ProcessPool>(opt.processes, opt.id, log);
      } catch (const std::system_error& e) {
        throw Error("Supervisor::Supervisor() - cannot start the process pool's fork server: " +
                    std::string(e.what()));
      }
    }
    builtin.emplace(opt, log, ctx, pool, procs.get(), aloops, delays, shutdown, life, *workers);
    for (auto& s : builtin->steps()) shutdown.add_builtin(std::move(s));
  }

  // The loop, the stopper, a pool thread, an aloop, or the thread inside
  // start(): none of them may wait for the shutdown.
  bool on_own_thread() const {
    return pool.on_pool_thread() || builtin->on_loop_thread() || shutdown.on_own_thread() ||
           aloops.on_thread();
  }

  // Registers a pool or process task and queues it with `enqueue` - at
  // once, or after its delay (holding no slot meanwhile). A template: the
  // common case, no delay, calls `enqueue` without type-erasing it.
  template <class Enqueue>
  void launch(detail::TaskStateBase* t, const TaskOptions& o, Enqueue enqueue) {
    const auto wait = wait_of(o);
    if (wait.count() > 0)
      t->mark_delayed();
    else
      t->mark_queued();
    self->register_task(t);
    if (wait.count() == 0) return enqueue();
    t->add_ref();
    delays.add(detail::Ref<detail::TaskStateBase>::adopt(t), wait, std::move(enqueue));
  }

  // How long a task waits before it is queued: its delay, or the time left
  // until its eta, rounded up (a steady timer never fires early, so the task
  // does not start before its eta; one in the past waits 0).
  static std::chrono::milliseconds wait_of(const TaskOptions& o) {
    if (o.delay.count() < 0) throw OptionsError("Supervisor::submit() - delay must be >= 0");
    if (!o.eta) return o.delay;
    if (o.delay.count() != 0)
      throw OptionsError(
          "Supervisor::submit() - set delay or eta, not both (delay waits from now, eta until a time)");
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*o.eta - std::chrono::system_clock::now());
    return std::max(left, std::chrono::milliseconds{0});
  }
};

Supervisor::Supervisor(SupervisorOptions options) : impl_(std::make_unique<Impl>(this, options)) {}

Supervisor::~Supervisor() {
  auto& d = *impl_;
  if (d.shutdown.unfinished()) {
    if (d.on_own_thread()) {
      d.log->critical("{}: Supervisor destroyed from one of its own threads", d.opt.id);
      std::terminate();
    }
    stop();
  }
  d.workers->detach();
}

void Supervisor::add_step(Step step) {
  impl_->shutdown.add_step(std::move(step));
}

std::vector<std::string> Supervisor::boot_order() const {
  return impl_->shutdown.boot_order();
}

void Supervisor::start() {
  auto& d = *impl_;
  if (d.shutdown.start())
    d.log->debug("{}: started (pool_size {}, reserve_normal {}, reserve_high {})", d.opt.id, d.opt.pool_size,
                 d.opt.reserve_normal, d.opt.reserve_high);
}

StopReport Supervisor::stop(StopOptions o) {
  auto& d = *impl_;
  if (o.warm_timeout.count() < 0 || o.soft_timeout.count() < 0)
    throw OptionsError("Supervisor::stop() - timeouts must be >= 0");
  return d.shutdown.stop(o, d.on_own_thread(), d.builtin->on_loop_thread());
}

StopReport Supervisor::block() {
  auto& d = *impl_;
  return d.shutdown.block(d.on_own_thread());
}

bool Supervisor::is_running() const noexcept {
  return impl_->life.running();
}
const std::string& Supervisor::id() const noexcept {
  return impl_->opt.id;
}

void Supervisor::check_running(const char* call) const {
  if (!impl_->life.running())
    throw LifecycleError(std::string(call) + " - supervisor '" + impl_->opt.id + "' is " +
                         impl_->life.name());
}

void Supervisor::reject_aloop(const TaskOptions& o) {
  throw OptionsError("Supervisor::submit() - .aloop = '" + o.aloop +
                     "' names an aloop, but this callable does not return an awaitable: it runs on the pool "
                     "(or, from atask::process(), in a child), never on an aloop");
}

std::uint64_t Supervisor::next_id() noexcept {
  return impl_->ids.fetch_add(1, std::memory_order_relaxed) + 1;
}

void Supervisor::register_task(detail::TaskStateBase* t) {
  auto& d = *impl_;
  if (!d.tasks.add(t))
    throw LifecycleError("Supervisor::submit() - supervisor '" + d.opt.id + "' is " + d.life.name());
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

void Supervisor::launch_delayed(detail::TaskStateBase* t, const TaskOptions& o,
                                detail::UniqueFunction spawn) {
  impl_->launch(t, o, std::move(spawn));
}

void Supervisor::launch_process(detail::ProcessJob& job, const TaskOptions& o) {
  auto& d = *impl_;
  if (!d.procs)
    throw LifecycleError("Supervisor::submit() - supervisor '" + d.opt.id +
                         "' has no process pool (set SupervisorOptions::processes.pool_size)");
  job.pool = d.procs.get();
  // On failure the process pool cancels the job's task and throws.
  d.launch(&job.task(), o, [j = &job, procs = d.procs.get()] { procs->enqueue(*j); });
}

Aloop& Supervisor::create_aloop(const std::string& name, AloopOptions options) {
  return impl_->aloops.create(name, options.make_default);
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
  i.state = d.life.load();
  i.pool = d.pool.info();
  if (d.procs) i.processes = d.procs->info();
  i.aloops = d.aloops.infos();
  i.steps = d.shutdown.step_infos();
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
