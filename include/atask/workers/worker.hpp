#pragma once
/// @file
/// Worker: the base of every worker type. A worker generates work (again and
/// again, on a trigger, from a queue, on a timer) and runs its executor for
/// each piece of it: a blocking executor on the priority pool at the
/// worker's priority, a coroutine executor on an aloop. One executor run per
/// worker at a time. See background_worker.hpp, event_worker.hpp,
/// queue_worker.hpp and interval_worker.hpp for the types, and
/// docs/workers.md for the whole story.
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

namespace boost::json {
class value;
}

namespace atask {

class Worker;

/// What an executor gets for each call.
struct WorkerContext {
  Worker& worker;
  /// The worker's name (stable while the worker is active).
  const std::string& name;
  /// The id of the task this call runs in (see Supervisor::tasks()).
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

namespace detail {

/// The options every worker type has, gathered from its own options struct.
struct WorkerSettings {
  std::string name;
  Priority priority = Priority::normal;
  std::string aloop;
  ErrorHandler on_error;
  std::size_t stop_after_errors = 0;
  std::chrono::nanoseconds interval{0}, delay{0}, delay_before{0};

  template <class O>
  static WorkerSettings common(const O& o) {
    return {o.name, o.priority, o.aloop, o.on_error, o.stop_after_errors, {}, {}, {}};
  }
};

struct WorkerAnchor;
struct WorkerTimer;
struct RunToken;

/// Calls an executor callable with (args..., ctx) when it takes the context,
/// else with (args...). void counts as true; bool says whether to go on.
template <class F, class... Args>
decltype(auto) call_with_context(F& f, WorkerContext& ctx, Args&... args) {
  if constexpr (std::is_invocable_v<F&, Args&..., WorkerContext&>)
    return std::invoke(f, args..., ctx);
  else if constexpr (std::is_invocable_v<F&, Args&...>)
    return std::invoke(f, args...);
  else
    static_assert(std::is_invocable_v<F&, Args&..., WorkerContext&>,
                  "atask: a worker executor must be callable with (item..., WorkerContext&) or (item...)");
}

template <class R>
bool keep_going(R&& r) {
  using T = std::remove_cvref_t<R>;
  static_assert(std::is_same_v<T, bool>, "atask: a blocking executor returns void or bool");
  return r;
}

}  // namespace detail

/// The base of every worker type: lifecycle, scheduling and bookkeeping.
/// Users subclass one of the concrete types (BackgroundWorker, EventWorker,
/// QueueWorker<T>, IntervalWorker, and their Async* coroutine forms) or
/// build one with a factory (background_worker(), event_worker(), ...).
///
/// Destruction: a worker stops when destroyed. The base class can only do
/// that after a subclass's members are gone, so a subclass whose executor
/// uses its own members must stop first: own it through AutoStop<W> (or
/// make_worker<W>()), or call stop() in its destructor. Factory-made workers
/// do this themselves.
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

  /// Stops the worker: no new executor runs (a queue worker drains or hands
  /// back its items, see QueueOptions::on_stop), the running call sees its
  /// stop token. A no-op when stopped.
  ///
  /// wait=true blocks until the stop of the active (or stopping) period this
  /// call found has completed: its running call has returned and
  /// after_stop() has run. It returns then, whatever other threads do: it
  /// neither waits for nor stops a period that begins after that stop
  /// completed (a start() from another thread, a restart() asked for by the
  /// executor), so the worker may be active again when it returns; no
  /// executor call of the period it stopped begins after it returned. On a
  /// stopped (or never started) worker it returns at once. Called from the
  /// worker's own executor (or, for a coroutine executor, from its aloop's
  /// thread) it cannot wait for itself: it returns at once and the stop
  /// completes when the executor returns.
  void stop(bool wait = true);

  /// stop(true), then start() with the overrides of the last start() (the
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
  /// "background", "event", "queue" or "interval".
  std::string_view kind() const noexcept { return kind_; }
  /// True for coroutine executors (they run on an aloop).
  bool coroutine() const noexcept { return coroutine_; }
  WorkerInfo info() const;
  /// The supervisor.
  /// @throws LifecycleError once it is gone.
  Supervisor& supervisor() const;

  // -- for control planes (the HTTP API), which know workers only by name -------
  /// True for event and interval workers: trigger() applies.
  bool can_trigger() const noexcept { return mode_ == Mode::event || mode_ == Mode::interval; }
  /// EventWorker/IntervalWorker::trigger() through the base class. False
  /// when the worker is not active. A run it asked for that a stop or
  /// restart drops before it begins is counted in info().triggers_dropped.
  /// @throws LifecycleError for other kinds.
  bool trigger_any(bool force = false);
  /// True for queue workers whose item type converts from Boost.JSON
  /// (boost::json::value_to, tag_invoke for user types).
  virtual bool accepts_json() const noexcept { return false; }
  /// Converts `item` to the queue's item type and try_put()s it: false when
  /// the queue is full.
  /// @throws ConversionError when the value does not fit the item type.
  /// @throws LifecycleError when the worker is not active or takes no JSON
  ///         (accepts_json() is false).
  virtual bool try_put_json(const boost::json::value& item);

 protected:
  enum class Mode : unsigned char { background, event, interval, queue };

  /// Registers the worker with the supervisor.
  /// @throws OptionsError on a taken name, or on an aloop for a blocking
  ///         executor (`coroutine` false).
  Worker(Supervisor& sv, Mode mode, bool coroutine, detail::WorkerSettings settings);

  /// Hooks, on the thread that calls start()/stop() (after_stop: the thread
  /// that completes the stop). What they throw: before_start propagates out
  /// of start(); the others are logged.
  virtual void before_start() {}
  virtual void after_start() {}
  virtual void before_stop() {}
  virtual void after_stop() {}

  /// One run of a blocking worker (on a pool thread). Return false to stop.
  virtual bool execute(WorkerContext& ctx);
  /// One run of a coroutine worker (on its aloop). Return false to stop.
  virtual boost::asio::awaitable<bool> execute_async(WorkerContext& ctx);

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

  /// Event and interval workers: one more run (see EventWorker::trigger).
  bool trigger_run(bool force, const char* call);

  // -- queue workers ---------------------------------------------------------
  /// Items waiting; called with the worker's mutex held.
  virtual std::size_t queued_locked() const noexcept { return 0; }
  /// Stop handing-back: take every item still queued (mutex held) and hand
  /// them over once the mutex is released (see QueueWorker).
  virtual void hand_back_locked() {}
  virtual void deliver_handed_back() {}
  /// Wakes putters waiting for room / refuses them when stopping (mutex held).
  virtual void queue_state_changed_locked() {}
  /// True while a queue worker should drain at stop.
  virtual bool drains_on_stop() const noexcept { return false; }
  /// A queue worker got an item: launch a run if none is going.
  void work_arrived_locked();
  /// True while put() may queue: active, not stopping.
  bool accepting_locked() const noexcept { return state_ == WorkerState::active; }
  /// True in the worker's executor call for this run.
  bool draining_locked() const noexcept { return state_ == WorkerState::stopping && draining_; }

  /// The name in force (mutex held).
  const std::string& name_locked() const noexcept { return cur_.name; }
  /// True on the thread of this worker's running executor call (mutex held).
  bool on_executor_thread_locked() const noexcept;
  void note_unprocessed_dropped(std::size_t n) noexcept;
  void note_handed_back(std::size_t n, bool to_callback) noexcept;
  void note_hand_back_threw(std::exception_ptr e) noexcept;

  /// Guards the worker's state (and a queue worker's items).
  mutable std::mutex m_;
  std::condition_variable space_cv_;  // queue workers: putters waiting for room

 private:
  friend struct detail::RunToken;
  friend struct detail::WorkerTimer;

  // detail::RegisteredWorker: what the supervisor's registry calls.
  Worker& registered_worker() noexcept override { return *this; }
  void registry_stop() override { stop(false); }
  bool registry_wait_stopped_until(std::chrono::steady_clock::time_point deadline) const override {
    return wait_stopped_until(deadline);
  }
  WorkerInfo registry_info() const override { return info(); }
  void registry_supervisor_gone() noexcept override { supervisor_gone(); }

  void call_started() noexcept;
  bool call_ended(std::exception_ptr e, WorkerContext* ctx = nullptr) noexcept;
  void report(const WorkerError& err) noexcept;

  bool has_work_locked() const noexcept;
  void kick_locked();
  void launch_locked();
  void run_done(std::uint64_t gen, bool keep) noexcept;
  void begin_stop_locked(bool by_executor);
  void continue_stop_locked();
  void finalize_locked();
  void after_unlock();
  void launch_failed_locked(const std::string& why);
  void on_timer(std::uint64_t gen) noexcept;
  void arm_timer_locked(std::chrono::steady_clock::time_point when);
  void cancel_timer_locked() noexcept;
  void schedule_first_locked();
  bool on_own_executor() const noexcept;
  void supervisor_gone() noexcept;
  void validate_overrides(const StartOptions& o) const;
  bool begin_body(std::uint64_t& task_id);
  void run_body(std::stop_token st, detail::RunToken& token);
  boost::asio::awaitable<void> run_body_async(std::stop_token st, detail::RunToken* token);
  std::string type_name() const;
  spdlog::logger& log() const noexcept { return *logger_; }

  std::shared_ptr<detail::WorkerRegistry> registry_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<detail::WorkerAnchor> anchor_;
  const Mode mode_;
  const bool coroutine_;
  const char* kind_;
  detail::WorkerSettings base_;  // as constructed
  detail::WorkerSettings cur_;   // in force for this active period
  StartOptions last_start_{};    // under m_ (start() assigns it): callers copy it under the lock

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
  // Active periods that have ended (the worker went back to stopped). A
  // waiting stop() waits for the count to pass the period it found, not for
  // the stopped state, which a start() from another thread may take away
  // before the waiter wakes.
  std::uint64_t stops_done_ = 0;
  bool running_ = false;       // a run (task) is in flight
  std::uint64_t run_gen_ = 0;  // which run is in flight
  TaskHandle<void> current_{};
  std::thread::id run_thread_{};    // the thread the running executor call is on
  std::size_t pending_runs_ = 0;    // event/interval: runs asked for
  std::size_t triggered_runs_ = 0;  // how many of pending_runs_ a trigger() asked for
  std::atomic<std::size_t> consecutive_errors_{0};
  std::unique_ptr<detail::WorkerTimer> timer_;
  std::chrono::steady_clock::time_point next_due_{};
  std::uint64_t timer_gen_ = 0;

  // -- counters: atomics, so that a call that goes well takes no lock ------------
  std::atomic<std::uint64_t> runs_{0}, errors_{0};
  std::uint64_t skipped_ = 0;                 // under m_
  std::uint64_t triggers_dropped_ = 0;        // under m_
  std::atomic<std::int64_t> last_run_ns_{0};  // system_clock, ns since the epoch; 0 = never
};

/// W with a destructor that stops the worker before W's own members go: the
/// safe way to own a subclass whose executor uses its members.
///
/// @code
///   atask::AutoStop<MyWorker> w(sv, ...);   // or auto w = atask::make_worker<MyWorker>(sv, ...);
/// @endcode
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as W.
template <class W>
class AutoStop final : public W {
 public:
  using W::W;
  ~AutoStop() override { this->stop(true); }
};

/// Creates a W (constructed from args) owned by a unique_ptr that stops it
/// before destroying it.
template <class W, class... Args>
std::unique_ptr<W> make_worker(Args&&... args) {
  static_assert(std::is_base_of_v<Worker, W>, "atask::make_worker<W>() - W must derive from atask::Worker");
  return std::make_unique<AutoStop<W>>(std::forward<Args>(args)...);
}

}  // namespace atask
