#pragma once
/// @file
/// Worker: the base of every worker type. A worker generates work (again and
/// again, on a trigger, from a queue, on a timer) and runs its executor for
/// each piece of it: a blocking executor on the priority pool at the
/// worker's priority, a coroutine executor on an aloop. One executor run per
/// worker at a time. basic_worker.hpp puts a source of work and an executor
/// together; background.hpp, event.hpp, interval.hpp and queue.hpp hold
/// the kinds, and docs/workers.md the whole story.
///
/// Lifecycle: stopped -> start() -> active -> stop() -> stopping (the running
/// executor call finishes) -> stopped. A worker can be started again.

#include <atask/supervisor/detail/worker_registry.hpp>
#include <atask/supervisor/supervisor.hpp>
#include <atask/core/worker_info.hpp>

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>

namespace atask {

class Worker;

/// What an executor gets for each call.
struct WorkerContext {
  Worker& worker;
  /// The worker's name (stable while the worker is active).
  const std::string& name;
  /// The id of the task this call runs in (see Supervisor::tasks()): a
  /// task per call for a blocking executor; for a coroutine executor the
  /// worker's host task, which runs every call of one active period.
  std::uint64_t task_id;
  /// Requested when the worker stops (and by a soft supervisor shutdown).
  /// Coroutine executors also see the stop as a cancellation of what they
  /// await.
  std::stop_token stop_token;

  bool stop_requested() const noexcept { return stop_token.stop_requested(); }
};

/// An executor call that threw.
struct WorkerError {
  std::string worker;
  std::uint64_t task_id = 0;
  std::exception_ptr error;
  std::string message;  ///< what() of the exception, or a description
};

/// Called for every executor call that throws, on the thread that ran it.
/// The default logs the error. What the handler throws is logged.
using ErrorHandler = std::function<void(const WorkerError&)>;

/// What start() may override for one active period (atasker's `_name`,
/// `_priority`, `_interval`, ...). Unset fields keep the worker's options.
struct StartOptions {
  std::optional<std::string> name{};
  std::optional<Priority> priority{};
  /// Coroutine executors only: a non-empty aloop on a blocking executor is
  /// an OptionsError.
  std::optional<std::string> aloop{};
  /// Interval workers only (OptionsError on other workers).
  std::optional<std::chrono::nanoseconds> interval{};
  std::optional<std::chrono::nanoseconds> delay{};
  std::optional<std::chrono::nanoseconds> delay_before{};
};

/// Options of background, async and event workers (designated initializers).
struct WorkerOptions {
  /// Unique within the supervisor; empty = "<kind>-<n>".
  std::string name{};
  /// Pool priority of blocking executor runs (ignored by coroutine executors).
  Priority priority = Priority::normal;
  /// Aloop for coroutine executors; empty = the supervisor's default aloop.
  /// On a blocking executor (it runs on the pool) a non-empty aloop is an
  /// OptionsError at construction, naming the worker and the aloop.
  std::string aloop{};
  /// Called when an executor call throws; empty = log it.
  ErrorHandler on_error{};
  /// Stop the worker after this many executor calls in a row threw (0 = never:
  /// the worker goes on).
  std::size_t stop_after_errors = 0;
};

/// The pass a worker constructor takes first. Only AutoStop<W> (and
/// make_worker<W>(), which uses it) makes one, so every worker object is
/// the most derived part of an AutoStop, whose destructor stops the worker
/// before any member its executor may use is destroyed: a worker subclass
/// cannot be destroyed while its executor runs. A subclass with a
/// constructor of its own takes the pass first and hands it to its base:
///
/// @code
///   struct Poller : atask::BackgroundWorker {
///     Poller(atask::WorkerInit init, Db& db) : BasicWorker(std::move(init), {.name = "poller"}), db_(db) {}
///     ...
///   };
///   auto p = atask::make_worker<Poller>(sv, db);   // or atask::AutoStop<Poller> p(sv, db);
/// @endcode
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Unsafe (it is moved once).
class WorkerInit {
 public:
  WorkerInit(WorkerInit&&) noexcept = default;
  WorkerInit& operator=(WorkerInit&&) = delete;
  /// The supervisor the worker registers with.
  Supervisor& supervisor() const noexcept { return sv_; }

 private:
  template <class W>
  friend class AutoStop;
  explicit WorkerInit(Supervisor& sv) noexcept : sv_(sv) {}
  Supervisor& sv_;
};

namespace detail {

/// The options every worker type has, gathered from its own options struct.
struct WorkerSettings {
  std::string name;
  Priority priority = Priority::normal;
  std::string aloop;
  ErrorHandler on_error;
  std::size_t stop_after_errors = 0;

  template <class O>
  static WorkerSettings common(const O& o) {
    return {o.name, o.priority, o.aloop, o.on_error, o.stop_after_errors};
  }
};

/// "a background", "an event", "an interval", "a queue": for messages.
inline std::string kind_with_article(WorkerKind k) {
  const std::string_view name = to_string(k);
  return std::string(k == WorkerKind::event || k == WorkerKind::interval ? "an " : "a ") + std::string(name);
}

struct WorkerAnchor;
struct RunToken;
struct WorkerHost;
template <class Source, class Form, class Items>
class Executor;

}  // namespace detail

/// The base of every worker type: the lifecycle and the engine that runs
/// the executor, one call at a time. What a kind of worker adds is its
/// source of work (LoopSource, TriggerSource, ScheduleSource, QueueSource),
/// and BasicWorker<Source, Form> adds the executor (`run()`, blocking or a
/// coroutine); BackgroundWorker, EventWorker, QueueWorker<T>, ... name the
/// combinations. Workers are made by a factory (background_worker(), ...)
/// or, for a subclass, by make_worker<W>() / AutoStop<W> (see WorkerInit).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe (every public member may be
/// called from any thread).
class Worker : private detail::RegisteredWorker {
 public:
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  virtual ~Worker();

  /// Starts the worker; false if it is already active or still stopping.
  /// What before_start() throws propagates and the worker stays stopped.
  /// @throws LifecycleError when the supervisor is not running.
  /// @throws OptionsError for bad overrides (or a name another worker has,
  ///         or an aloop for a blocking executor, or an aloop that does not
  ///         exist).
  bool start(const StartOptions& overrides = {});

  /// Stops the worker and waits until the stop has completed: no new
  /// executor run begins (a queue worker drains or hands back its items,
  /// see QueueOptions::on_stop), the running call sees its stop token and
  /// returns, after_stop() runs. A no-op on a stopped worker.
  ///
  /// It waits for the stop of the active (or stopping) period it found,
  /// whatever other threads do: it neither waits for nor stops a period that
  /// begins after that stop completed (a start() from another thread, a
  /// restart() asked for by the executor), so the worker may be active
  /// again when it returns; no executor call of the period it stopped
  /// begins after it returned. Called from the worker's own executor (or,
  /// for a coroutine executor, from its aloop's thread) it cannot wait for
  /// itself: it acts as request_stop() and the stop completes when the
  /// executor returns.
  void stop();

  /// Begins the stop as stop() does and returns at once: the worker is
  /// stopping (or stopped) when it returns. wait_stopped_for() waits.
  void request_stop();

  /// stop(), then start() with the overrides of the last start() (the
  /// start may return false: another thread started the worker first).
  /// Called from the worker's own executor, the worker starts again once the
  /// executor returns.
  void restart();

  /// Active: started and not stopping.
  bool is_active() const noexcept;
  /// Started and not yet fully stopped (active or stopping).
  bool is_started() const noexcept;
  /// Fully stopped: no executor call is running.
  bool is_stopped() const noexcept;
  WorkerState state() const noexcept;

  /// Waits until the worker is fully stopped; false on timeout.
  bool wait_stopped_until(std::chrono::steady_clock::time_point deadline) const;
  template <class Rep, class Period>
  bool wait_stopped_for(std::chrono::duration<Rep, Period> d) const {
    return wait_stopped_until(std::chrono::steady_clock::now() +
                              std::chrono::ceil<std::chrono::steady_clock::duration>(d));
  }

  std::string name() const;
  Priority priority() const;
  WorkerKind kind() const noexcept { return kind_; }
  /// True for coroutine executors (they run on an aloop).
  bool coroutine() const noexcept { return coroutine_; }
  WorkerInfo info() const;
  /// The supervisor.
  /// @throws LifecycleError once it is gone.
  Supervisor& supervisor() const;

 protected:
  /// Registers the worker with the supervisor.
  /// @throws OptionsError on a taken name, or on an aloop for a blocking
  ///         executor (`coroutine` false).
  Worker(WorkerInit init, WorkerKind kind, bool coroutine, detail::WorkerSettings settings);

  /// Hooks, on the thread that calls start()/stop() (after_stop: the thread
  /// that completes the stop). What they throw: before_start propagates out
  /// of start(); the others are logged.
  virtual void before_start() {}
  virtual void after_start() {}
  virtual void before_stop() {}
  virtual void after_stop() {}

  /// Calls f (the user's executor) for one call: counts it, and sends what it
  /// throws to on_error. Returns false when the worker must stop.
  template <class F>
  bool guarded_call(WorkerContext& ctx, F&& f) {
    call_started();
    try {
      const bool keep = f();
      call_ended(nullptr);
      return keep;
    } catch (...) {
      return call_ended(std::current_exception(), &ctx);
    }
  }
  /// The same for a coroutine executor: `f()` returns awaitable<bool>.
  template <class F>
  boost::asio::awaitable<bool> guarded_call_async(WorkerContext& ctx, F f) {
    call_started();
    std::exception_ptr e;
    try {
      const bool keep = co_await f();
      call_ended(nullptr);
      co_return keep;
    } catch (...) {
      e = std::current_exception();
    }
    co_return call_ended(e, &ctx);
  }

  // -- the source of work: what a kind of worker tells the engine ----------------
  // Called with m_ held unless said otherwise.

  /// A run may begin now (the worker is active and no run is going): take
  /// its work and say true, or say false when there is none.
  virtual bool take_run_locked() = 0;
  /// start() checks its overrides (without the lock); `where` names the call.
  /// The default refuses interval, delay and delay_before.
  /// @throws OptionsError
  virtual void check_start(const StartOptions& overrides, const std::string& where) const;
  /// The worker becomes active with these overrides (checked).
  virtual void apply_start_locked(const StartOptions&) {}
  /// The worker just became active: the default looks for work at once.
  virtual void started_locked() { work_arrived_locked(); }
  /// A run ended and the worker stays active (before it looks for work).
  virtual void run_ended_locked() {}
  /// The worker began to stop.
  virtual void stopping_locked() {}
  /// The supervisor is gone: release what belongs to it (timers).
  virtual void supervisor_gone_locked() noexcept {}
  /// Adds what the source knows to info().
  virtual void add_info_locked(WorkerInfo&) const {}
  // Queue workers: items waiting; hand them back at a stop (mutex held) and
  // deliver them once it is released; wake or refuse waiting putters; drain.
  virtual std::size_t queued_locked() const noexcept { return 0; }
  virtual void hand_back_locked() {}
  virtual void deliver_handed_back() {}
  virtual void queue_state_changed_locked() {}
  virtual bool drains_on_stop() const noexcept { return false; }

  // -- what the engine offers a source ---------------------------------------------
  /// Work arrived: begin a run if the worker is active and none is going.
  void work_arrived_locked();
  /// The same, for a caller that calls after_unlock() next: a waiting
  /// coroutine host is woken there, once m_ is released, so that it does
  /// not wake up only to wait for the lock.
  void work_arrived_then_unlock_locked();
  /// Completes what the last locked section left to do (stop requests, the
  /// end of a stop): call it after releasing m_ when a *_locked() call may
  /// have begun or ended a stop.
  void after_unlock();
  /// Active: started and not stopping.
  bool active_locked() const noexcept { return state_ == WorkerState::active; }
  /// A run is in flight.
  bool running_locked() const noexcept { return running_; }
  /// Stopping and draining a queue: the run goes on taking items.
  bool draining_locked() const noexcept { return state_ == WorkerState::stopping && draining_; }
  /// The name in force.
  const std::string& name_locked() const noexcept { return cur_.name; }
  /// True on the thread of this worker's running executor call.
  bool on_executor_thread_locked() const noexcept;
  /// "EventWorker", "AsyncQueueWorker", ...: for messages.
  std::string type_name() const;
  spdlog::logger& log() const noexcept { return *logger_; }
  void note_unprocessed_dropped(std::size_t n) noexcept;
  void note_handed_back(std::size_t n, bool to_callback) noexcept;
  void note_hand_back_threw(std::exception_ptr e) noexcept;

  /// Guards the worker's state (and its source's).
  mutable std::mutex m_;

 private:
  friend struct detail::RunToken;
  template <class W>
  friend class AutoStop;
  template <class Source, class Form, class Items>
  friend class detail::Executor;

  /// One run of a blocking worker (on a pool thread); one run of a
  /// coroutine worker (on its aloop). Return false to stop. The executor
  /// part of BasicWorker overrides the one of its form.
  virtual bool execute(WorkerContext& ctx);
  virtual boost::asio::awaitable<bool> execute_async(WorkerContext& ctx);

  // detail::RegisteredWorker: what the supervisor's registry calls.
  Worker& registered_worker() noexcept override { return *this; }
  void registry_stop() override { request_stop(); }
  bool registry_wait_stopped_until(std::chrono::steady_clock::time_point deadline) const override {
    return wait_stopped_until(deadline);
  }
  WorkerInfo registry_info() const override { return info(); }
  void registry_supervisor_gone() noexcept override { supervisor_gone(); }

  /// Construction is complete (AutoStop's constructor): the supervisor's
  /// registry may call this worker from other threads from now on.
  void publish() noexcept { registry_->publish(*this); }
  /// Stops the worker, waits, and takes it out of the registry and out of
  /// reach of its pending callbacks: AutoStop's destructor calls it before
  /// any part of the object is destroyed, and ~Worker() again (a no-op then).
  void retire() noexcept;
  void stop_impl(bool wait);
  void call_started() noexcept;
  bool call_ended(std::exception_ptr e, WorkerContext* ctx = nullptr) noexcept;
  void report(const WorkerError& err) noexcept;

  void launch_locked();
  void run_done(std::uint64_t gen, bool keep) noexcept;
  // A run ended, its executor having answered `keep` (under m_): stop if
  // it said false, else on to the next run; a stop under way goes on.
  void settle_run_locked(bool keep);
  void begin_stop_locked(bool by_executor);
  void continue_stop_locked();
  void finalize_locked();
  void launch_failed_locked(const std::string& why);
  void supervisor_gone() noexcept;
  void validate_overrides(const StartOptions& o) const;
  bool begin_body(std::uint64_t& task_id);
  void run_body(std::stop_token st, detail::RunToken& token);
  // Coroutine executors: one task per active period (the host) runs every
  // call of it, waiting on the aloop between runs; see worker_runs.cpp.
  void start_host_locked();
  void wake_host_locked() noexcept;
  void host_lost(std::uint64_t gen) noexcept;
  boost::asio::awaitable<void> host_body(std::stop_token st, detail::RunToken* token);

  std::shared_ptr<detail::WorkerRegistry> registry_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<detail::WorkerAnchor> anchor_;
  const WorkerKind kind_;
  const bool coroutine_;
  detail::WorkerSettings base_;  // as constructed
  detail::WorkerSettings cur_;   // in force for this active period
  StartOptions last_start_{};    // under m_ (start() assigns it): callers copy it under the lock
  std::atomic<bool> retired_{false};

  // -- state under m_ ----------------------------------------------------------
  Supervisor* sv_;  // nullptr once the supervisor is gone
  WorkerState state_ = WorkerState::stopped;
  bool starting_ = false;            // start() is calling before_start()
  bool finalizing_ = false;          // the stop is completing (hooks, hand-back)
  bool need_finalize_ = false;       // after_unlock() completes the stop
  TaskHandle<void> stop_request_{};  // after_unlock() requests its stop
  std::thread::id loop_thread_{};    // coroutine executors: the aloop's thread
  mutable std::condition_variable state_cv_;
  bool stop_hook_ = false;  // before_stop() is being called
  bool draining_ = false;   // a queue worker drains while stopping
  bool restart_pending_ = false;
  bool retiring_ = false;    // being destroyed: start() refuses, a pending restart is dropped
  bool restarting_ = false;  // after_unlock() is starting the worker again (retire() waits for it)
  // Active periods that have ended (the worker went back to stopped). A
  // waiting stop() waits for the count to pass the period it found, not for
  // the stopped state, which a start() from another thread may take away
  // before the waiter wakes.
  std::uint64_t stops_done_ = 0;
  bool running_ = false;        // a run is in flight (a task; for a coroutine executor, taken for the host)
  std::uint64_t run_gen_ = 0;   // which run (blocking) or host (coroutine) is in flight
  TaskHandle<void> current_{};  // the task of the run (blocking) or of the host (coroutine)
  std::uint64_t host_gen_ = 0;  // coroutine executors: the host task in flight (0 = none)
  bool host_waiting_ = false;   // the host waits for a run: wake it
  bool defer_wake_ = false;     // work_arrived_then_unlock_locked() is calling: wake in after_unlock()
  bool wake_pending_ = false;   // after_unlock() wakes the host
  std::weak_ptr<detail::WorkerHost> host_;
  std::thread::id run_thread_{};  // the thread the running executor call is on
  std::string last_error_;        // the last executor error, as WorkerError::message
  std::optional<std::chrono::system_clock::time_point> last_error_at_;

  // -- counters: atomics, so that a call that goes well takes no lock ------------
  // On a cache line of their own: the executor's thread writes them on every
  // call, while putters write a queue worker's queue, declared right after.
  struct alignas(64) Counters {
    std::atomic<std::size_t> consecutive_errors{0};
    std::atomic<std::uint64_t> runs{0}, errors{0};
    std::atomic<std::int64_t> last_run_ns{0};  // system_clock, ns since the epoch; 0 = never
  } counters_;
};

/// W, created so that it cannot be destroyed while its executor runs: the
/// only way to create a worker subclass (see WorkerInit). Its destructor
/// stops the worker (and waits) before any part of W is destroyed.
///
/// @code
///   atask::AutoStop<Poller> p(sv, {.name = "poller"});   // W's options, or W's own constructor arguments
///   auto q = atask::make_worker<Poller>(sv, {.name = "poller-2"});
/// @endcode
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as W.
template <class W>
class AutoStop final : public W {
 public:
  /// W(WorkerInit, args...).
  template <class... Args>
  explicit AutoStop(Supervisor& sv, Args&&... args) : W(WorkerInit(sv), std::forward<Args>(args)...) {
    this->publish();
  }
  /// W(WorkerInit, options): lets `{.name = "x"}` name W's options.
  AutoStop(Supervisor& sv, typename W::options_type options) : W(WorkerInit(sv), std::move(options)) {
    this->publish();
  }
  ~AutoStop() override { this->retire(); }
};

/// Creates a W as AutoStop<W> does, owned by a unique_ptr.
template <class W, class... Args>
[[nodiscard]] std::unique_ptr<W> make_worker(Supervisor& sv, Args&&... args) {
  static_assert(std::is_base_of_v<Worker, W>, "atask::make_worker<W>() - W must derive from atask::Worker");
  return std::make_unique<AutoStop<W>>(sv, std::forward<Args>(args)...);
}
/// make_worker<W>(sv, {.name = "x"}): W's options by designated initializers.
template <class W>
[[nodiscard]] std::unique_ptr<W> make_worker(Supervisor& sv, typename W::options_type options) {
  static_assert(std::is_base_of_v<Worker, W>, "atask::make_worker<W>() - W must derive from atask::Worker");
  return std::make_unique<AutoStop<W>>(sv, std::move(options));
}

}  // namespace atask
