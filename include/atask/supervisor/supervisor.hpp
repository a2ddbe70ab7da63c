#pragma once
/// @file
/// Supervisor: the root object. It owns an io_context on its own thread
/// (timers, signals, shutdown stages), the priority ThreadPool and named
/// aloops, and it keeps track of every task it runs. It is built from steps
/// (see step.hpp): they start in dependency order and stop in reverse.
///
/// @code
///   atask::Supervisor sv({.id = "svc", .pool_size = 8, .reserve_high = 2});
///   sv.start();
///   auto t = sv.submit({.priority = atask::Priority::high}, [](int x) { return x * 2; }, 21);
///   assert(t.get() == 42);
///   sv.stop();
/// @endcode

#include <atask/core/detail/task_impl.hpp>
#include <atask/core/errors.hpp>
#include <atask/core/metrics.hpp>
#include <atask/core/priority.hpp>
#include <atask/core/task.hpp>
#include <atask/core/task_info.hpp>
#include <atask/core/worker_info.hpp>
#include <atask/pool/thread_pool.hpp>
#include <atask/aloop/aloop.hpp>
#include <atask/process/detail/process_job.hpp>
#include <atask/process/pool_options.hpp>
#include <atask/supervisor/step.hpp>
#include <atask/util/enum_names.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace spdlog {
class logger;
}

namespace atask {

template <class R, class... A>
class ProcessFn;
class JsonProcessCall;

namespace detail {
class WorkerRegistry;
struct SupervisorAccess;

template <class F>
struct is_process_fn : std::false_type {};
template <class R, class... A>
struct is_process_fn<ProcessFn<R, A...>> : std::true_type {};
template <>
struct is_process_fn<JsonProcessCall> : std::true_type {};
}  // namespace detail

/// How stop() shuts down, in stages each bounded in time. This is the
/// contract; docs/foundation.md and docs/steps.md are guides to it.
///  - warm (from the moment the stop begins): the steps stop in reverse
///    boot order (workers finish their run); once the "pool" step stops,
///    no new tasks; delayed tasks are canceled; queued tasks are canceled
///    (cancel_queued) or still run; running tasks finish.
///  - soft (after warm_timeout): what is still queued is canceled and every
///    running task is asked to stop (stop_token / cancellation slot).
///  - cold (after soft_timeout): tasks still running are abandoned: their
///    waiters get TaskAbandoned, they are logged and reported, and their
///    threads are let go to end on their own.
struct StopOptions {
  bool cancel_queued = true;
  std::chrono::milliseconds warm_timeout{30'000};
  std::chrono::milliseconds soft_timeout{10'000};
  /// false: begin the shutdown and return at once; block() or the
  /// destructor completes it.
  bool wait = true;
};

/// Supervisor options; pass them as designated initializers.
struct SupervisorOptions {
  /// Used in log lines and thread names ("<id>-sv", "<id>-N").
  std::string id = "atask";
  /// Thread-pool sizes (see PoolLimits; the admission rule is at Priority).
  int pool_size = default_pool_size();
  int reserve_normal = 0;
  int reserve_high = 0;
  int min_threads = 0;
  int max_threads = 0;
  /// Start min_threads pool threads in start().
  bool prespawn = false;
  /// An idle pool thread above min_threads exits after this long.
  std::chrono::milliseconds idle_timeout{10'000};
  /// A task that waited longer than this in the queue before it started is
  /// logged (warning / error) and handed to the callback, on the thread that
  /// runs it, just before it runs. 0 = off.
  std::chrono::milliseconds timeout_warning{0};
  std::chrono::milliseconds timeout_critical{0};
  std::function<void(const TaskInfo&)> on_timeout_warning{};
  std::function<void(const TaskInfo&)> on_timeout_critical{};
  /// How many finished tasks tasks() remembers; memory stays flat.
  std::size_t history_size = 1000;
  /// Name of the aloop coroutine tasks use when they name none.
  std::string default_aloop = "default";
  /// SIGINT/SIGTERM start a staged shutdown (see `signal_stop`); a second
  /// signal moves to the next stage at once.
  bool handle_signals = false;
  /// The shutdown a first signal starts.
  StopOptions signal_stop{.cancel_queued = false};
  /// spdlog logger; nullptr = a stderr logger named "atask".
  std::shared_ptr<spdlog::logger> logger{};
  /// The process pool (off unless processes.pool_size > 0). Its fork server
  /// is forked by the constructor: construct the supervisor before the
  /// program starts threads. See atask/process/process.hpp.
  ProcessPoolOptions processes{};

  static int default_pool_size() noexcept {
    const unsigned n = std::thread::hardware_concurrency();
    return n < 2 ? 2 : static_cast<int>(n);
  }
};

/// The stage a shutdown has reached (see StopOptions). Named "none", "warm",
/// "soft", "cold" by to_string() / from_string() (enum_names.hpp).
enum class StopStage : unsigned char { none, warm, soft, cold };
BOOST_DESCRIBE_ENUM(StopStage, none, warm, soft, cold)

/// Where a supervisor is in its life: created -> running -> stopping ->
/// stopped (or created -> stopped when stopped before start() got far
/// enough). Named "created", "running", "stopping", "stopped" by to_string()
/// / from_string() (enum_names.hpp): the HTTP API's "state" and the metrics'
/// `state` label.
enum class SupervisorState : unsigned char { created, running, stopping, stopped };
BOOST_DESCRIBE_ENUM(SupervisorState, created, running, stopping, stopped)

/// What a stop did.
struct StopReport {
  bool already_stopped = false;       ///< the supervisor was stopped before: nothing done
  bool completed = false;             ///< false when stop() returned without waiting
  StopStage stage = StopStage::none;  ///< the last stage reached
  std::size_t canceled = 0;           ///< tasks that never started
  std::size_t stop_requested = 0;     ///< running tasks asked to stop (soft stage)
  std::vector<TaskInfo> abandoned;    ///< tasks still running at the cold stage
};

/// Options of Supervisor::create_aloop(); pass them as designated
/// initializers: `sv.create_aloop("net", {.make_default = true})`.
struct AloopOptions {
  /// Coroutine tasks that name no aloop (TaskOptions::aloop empty) run on
  /// this one from now on, in place of SupervisorOptions::default_aloop.
  bool make_default = false;
};

struct AloopInfo {
  std::string name{};
  bool is_default = false;
  bool running = false;
};

/// supervisor.info()
struct SupervisorInfo {
  std::string id;
  SupervisorState state = SupervisorState::created;
  PoolInfo pool;
  ProcessPoolInfo processes;
  std::vector<AloopInfo> aloops;
  /// The steps, in boot order once started (registration order before).
  std::vector<StepInfo> steps;
  TaskCounters tasks;
  std::size_t active_tasks = 0;  ///< queued, delayed or started
};

/// Options of one task.
struct TaskOptions {
  /// Admission priority on the thread pool, or on the process pool for a
  /// process task (see Priority). For a coroutine task the priority does not
  /// apply (it holds no pool slot), but it is recorded: tasks(),
  /// task_metrics() and the task's handle show it.
  Priority priority = Priority::normal;
  /// Wait this long before queueing (holding no pool slot meanwhile).
  std::chrono::milliseconds delay{0};
  /// Queue no sooner than this time (the system clock; holding no pool slot
  /// meanwhile); one in the past queues at once. Setting both delay and eta
  /// is an OptionsError.
  std::optional<std::chrono::system_clock::time_point> eta{};
  /// Aloop for a coroutine callable; empty = the default aloop. Naming one
  /// for a task that runs on the pool or in a child is an OptionsError.
  std::string aloop{};
  /// Shown in tasks() and logs.
  std::string name{};
};

/// The task supervisor.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, except that stop() with
/// wait=true called from one of the supervisor's own threads (a task, an
/// aloop, a timer) cannot wait for itself: it begins the shutdown and
/// returns (report.completed == false); block() or the destructor finish it.
class Supervisor {
 public:
  /// Validates the options. Starts no thread; with a process pool it forks
  /// the pool's fork server here, while the program is (ideally) still
  /// single-threaded.
  /// @throws OptionsError for invalid options.
  explicit Supervisor(SupervisorOptions options = {});
  /// stop() with the default options if still running.
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  /// Adds a step (see Step and docs/steps.md). Only before start().
  /// @throws OptionsError for an empty name or one already taken (built-in
  ///         names included: "loop", "aloops", "pool", "workers").
  /// @throws LifecycleError once start() has been called.
  void add_step(Step step);

  /// The step names in the order start() starts them: dependencies first,
  /// ties in registration order (built-ins first). Before start() it is
  /// resolved on the fly.
  /// @throws OptionsError before start(), where start() would throw it.
  std::vector<std::string> boot_order() const;

  /// Starts the steps in boot order (the order is logged at debug level):
  /// "loop" (the io_context thread), "aloops", "processes" (only with a
  /// process pool: forks its children), "pool" (from here on the
  /// supervisor is running and takes tasks), "workers", then user steps.
  /// A stop requested while start() runs (from a start hook, a task, a
  /// signal) takes effect once the running start hook returns: no further
  /// step starts, start() returns, block() returns the report.
  /// @throws LifecycleError when called twice or after stop().
  /// @throws OptionsError for a step cycle or a missing dependency, before
  ///         any step starts: the supervisor stays created (fix it and call
  ///         again).
  /// @throws Error when a step's start hook throws: the steps already
  ///         started are stopped in reverse order first, and the supervisor
  ///         is stopped.
  void start();

  /// Shuts down in stages (see StopOptions): every started step's stop
  /// hook runs once, in reverse boot order, on the stopper thread
  /// "<id>-stop". A stop that can wait (wait=true, from a thread that is
  /// not one of the supervisor's) keeps taking work while the steps above
  /// the pool stop: workers finish their run and queues drain, user steps
  /// may still submit; a stop that cannot wait (wait=false, from inside a
  /// task, or a signal) closes the supervisor to new work at once and then
  /// runs the same hooks. A second call is a no-op that returns
  /// {.already_stopped = true}; a call while another stop is under way
  /// does not change it, and waits for it if it can.
  /// @throws OptionsError when a timeout is negative.
  StopReport stop(StopOptions options = {});
  /// Blocks until the supervisor is stopped (by stop(), a signal, or a task)
  /// and the shutdown has completed; returns its report.
  StopReport block();

  /// True while the supervisor takes tasks: from the start of the "pool"
  /// step until a stop closes it (a stop that can wait closes it when it
  /// reaches the pool step).
  bool is_running() const noexcept;
  const std::string& id() const noexcept;

  /// Submits f(args...) and returns its handle. A callable returning
  /// boost::asio::awaitable<T> runs on an aloop (TaskHandle<T>); an
  /// atask::process(fn) runs in a child of the process pool (TaskHandle<R>,
  /// see atask/process/process.hpp); any other on the pool
  /// (TaskHandle<result>). A callable whose first parameter is a
  /// std::stop_token gets the task's token. Arguments are copied or moved
  /// into the task, as std::thread does.
  /// @throws LifecycleError when not running, or when the aloop is stopped,
  ///         or for a process task when there is no process pool.
  /// @throws OptionsError when options.delay is negative, or when both
  ///         options.delay and options.eta are set.
  template <class F, class... Args>
  auto submit(const TaskOptions& options, F&& f, Args&&... args);

  /// Fire-and-forget on the pool: no handle, no registry entry. What f
  /// throws is logged.
  /// @throws LifecycleError when not running.
  template <class F>
  void post(Priority p, F&& f) {
    check_running("Supervisor::post()");
    pool().post(p, std::forward<F>(f));
  }

  /// Creates and starts a named aloop (see AloopOptions).
  /// @throws Error if the name is taken.
  Aloop& create_aloop(const std::string& name, AloopOptions options = {});
  /// The aloop named `name`.
  /// @throws Error if there is no such aloop.
  Aloop& aloop(std::string_view name);
  /// The default aloop, created on first use.
  Aloop& default_aloop();
  /// Stops an aloop (its pending coroutine tasks end canceled) and forgets it.
  void stop_aloop(std::string_view name);

  /// Changes the pool sizes at run time.
  /// @throws OptionsError on bad values.
  void resize(const PoolLimits& limits);

  SupervisorInfo info() const;
  /// Task counts and queue-wait / run-time histograms by priority and kind
  /// (see TaskMetrics). Cheap enough to call on every metrics scrape.
  TaskMetrics task_metrics() const;
  /// Every worker created for this supervisor, in creation order.
  std::vector<WorkerInfo> workers() const;
  /// Active tasks, then the finished ones still in the history, oldest
  /// first; optionally only those with one status.
  std::vector<TaskInfo> tasks(std::optional<TaskStatus> only = std::nullopt) const;

  /// The supervisor's own io_context (timers, signals). Do not run blocking
  /// code on it.
  boost::asio::io_context& io_context();
  ThreadPool& pool();
  spdlog::logger& logger() const;
  /// The same logger, shared (for objects that may outlive a log call's caller).
  std::shared_ptr<spdlog::logger> logger_ptr() const;

 private:
  // The library's own parts (workers, the HTTP server) reach the internals
  // below through this one friend (src/supervisor/access.hpp), not through
  // public members.
  friend struct detail::SupervisorAccess;

  struct Impl;
  const std::shared_ptr<detail::WorkerRegistry>& worker_registry() const noexcept;
  // Queues a process task on the process pool (or delays it first). Throws
  // LifecycleError when not running or without a process pool.
  void launch_process(detail::ProcessJob& job, const TaskOptions& o);
  template <class F, class... Args>
  auto submit_callable(const TaskOptions& options, F&& f, Args&&... args);
  void check_running(const char* call) const;
  // An .aloop on a task that does not run on an aloop is a mistake, not a hint.
  [[noreturn]] static void reject_aloop(const TaskOptions& o);
  std::uint64_t next_id() noexcept;
  void launch_thread(detail::TaskStateBase* t, const TaskOptions& o);
  // Registers a coroutine task with a delay or an eta and calls `spawn` on
  // the supervisor's loop when it is due (at once for an eta in the past).
  // Throws OptionsError for a negative delay, or both delay and eta.
  void launch_delayed(detail::TaskStateBase* t, const TaskOptions& o, detail::UniqueFunction spawn);
  template <class T, class F>
  void launch_coroutine(detail::CoroTask<T, F>* t, const TaskOptions& o);
  Aloop& aloop_for(const TaskOptions& o);
  void register_task(detail::TaskStateBase* t);
  void fail_launch(detail::TaskStateBase* t, std::exception_ptr e) noexcept;

  std::unique_ptr<Impl> impl_;
};

// -- templates -----------------------------------------------------------------

template <class F, class... Args>
auto Supervisor::submit(const TaskOptions& o, F&& f, Args&&... args) {
  check_running("Supervisor::submit()");
  if constexpr (detail::is_process_fn<std::remove_cvref_t<F>>::value) {
    using R = typename std::remove_cvref_t<F>::result_type;
    if (!o.aloop.empty()) reject_aloop(o);
    auto* t = f.make_task(next_id(), o.priority, o.name, std::forward<Args>(args)...);
    TaskHandle<R> h(detail::Ref<detail::TaskState<R>>::adopt(t));
    launch_process(*t, o);
    return h;
  } else {
    return submit_callable(o, std::forward<F>(f), std::forward<Args>(args)...);
  }
}

template <class F, class... Args>
auto Supervisor::submit_callable(const TaskOptions& o, F&& f, Args&&... args) {
  auto bound = detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...);
  using Bound = decltype(bound);
  using R = typename detail::bound_result<Bound>::type;
  if constexpr (detail::is_awaitable<R>::value) {
    using T = typename detail::is_awaitable<R>::value_type;
    auto* t = new detail::CoroTask<T, Bound>(next_id(), o.priority, o.name, std::move(bound));
    TaskHandle<T> h(detail::Ref<detail::TaskState<T>>::adopt(t));
    launch_coroutine(t, o);
    return h;
  } else {
    if (!o.aloop.empty()) reject_aloop(o);
    auto* t = new detail::ThreadTask<R, Bound>(next_id(), o.priority, o.name, std::move(bound));
    TaskHandle<R> h(detail::Ref<detail::TaskState<R>>::adopt(t));
    launch_thread(t, o);
    return h;
  }
}

template <class T, class F>
void Supervisor::launch_coroutine(detail::CoroTask<T, F>* t, const TaskOptions& o) {
  Aloop* loop = nullptr;
  try {
    loop = &aloop_for(o);
    t->set_executor(loop->get_executor());
  } catch (...) {
    fail_launch(t, std::current_exception());
    throw;
  }
  if (o.delay.count() != 0 || o.eta) {
    // Like a pool task's delay: nothing is spawned until it is due.
    launch_delayed(
        t, o, detail::UniqueFunction([this, loop, t] {
          try {
            t->add_ref();
            t->add_ref();
            detail::UniqueFunction keep_alive([r = detail::Ref<detail::CoroTask<T, F>>::adopt(t)] {});
            loop->spawn(detail::CoroTask<T, F>::body(detail::Ref<detail::CoroTask<T, F>>::adopt(t)),
                        t->slot(), std::move(keep_alive), *t);
          } catch (...) {
            fail_launch(t, std::current_exception());
          }
        }));
    return;
  }
  t->mark_queued();
  register_task(t);
  t->add_ref();
  try {
    // The slot's signal is a member of *t, and co_spawn still touches it
    // after the coroutine (and its reference) is gone, until it calls its
    // completion handler: that handler holds a reference too.
    t->add_ref();
    detail::UniqueFunction keep_alive([r = detail::Ref<detail::CoroTask<T, F>>::adopt(t)] {});
    loop->spawn(detail::CoroTask<T, F>::body(detail::Ref<detail::CoroTask<T, F>>::adopt(t)), t->slot(),
                std::move(keep_alive), *t);
  } catch (...) {
    fail_launch(t, std::current_exception());
    throw;
  }
}

}  // namespace atask
