#pragma once
/// @file
/// IntervalWorker / AsyncIntervalWorker: run the executor on a schedule, and
/// the interval_worker() factory.
///
/// @code
///   auto beat = atask::interval_worker(sv, [] { send_heartbeat(); },
///                                      {.priority = atask::Priority::high, .interval = 1s});
///   beat->start();
///   beat->trigger();   // one run now; the schedule stays as it was
/// @endcode

#include <atask/workers/background.hpp>

namespace atask {

/// Options of interval workers (designated initializers). The common fields
/// come first, in the order of WorkerOptions, then the schedule:
/// `{.name = "beat", .priority = atask::Priority::high, .interval = 1s}`.
struct IntervalOptions {
  // -- the common fields, in the order of WorkerOptions --
  /// Unique within the supervisor; empty = "interval-<n>".
  std::string name{};
  /// Pool priority of blocking executor runs (ignored by coroutine executors).
  Priority priority = Priority::normal;
  /// Aloop for coroutine executors; empty = the supervisor's default aloop.
  /// OptionsError on a blocking executor (it runs on the pool).
  std::string aloop{};
  /// Called when an executor call throws; empty = log it.
  ErrorHandler on_error{};
  /// Stop the worker after this many executor calls in a row threw (0 = never).
  std::size_t stop_after_errors = 0;
  // -- interval workers only --
  /// Fixed rate: runs at start + delay_before + k * interval, however long
  /// each run takes (a run that overlaps the next tick delays it; ticks that
  /// pass during one run coalesce into one run, and the schedule stays put).
  std::chrono::nanoseconds interval{0};
  /// Fixed gap: the next run starts this long after the previous returned.
  /// interval and delay together is an OptionsError; one of them is needed.
  std::chrono::nanoseconds delay{0};
  /// Wait this long after start() before the first run (0: run at once).
  std::chrono::nanoseconds delay_before{0};
};

namespace detail {
inline WorkerSettings interval_settings(const IntervalOptions& o) {
  WorkerSettings s = WorkerSettings::common(o);
  s.interval = o.interval;
  s.delay = o.delay;
  s.delay_before = o.delay_before;
  return s;
}
}  // namespace detail

/// Runs its blocking executor on the pool on a schedule.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class IntervalWorker : public Worker {
 public:
  /// @throws OptionsError for interval <= 0 without a delay, interval with
  ///         delay, negative delay or delay_before (or a taken name, or an
  ///         aloop: this executor runs on the pool).
  explicit IntervalWorker(Supervisor& sv, IntervalOptions o)
      : Worker(sv, Mode::interval, false, detail::interval_settings(o)) {}

  /// Runs the executor now (coalescing with a run in progress, or queued
  /// when forced), without moving the schedule. False when not active.
  /// A run it asked for that a stop() or restart() drops before it begins
  /// counts in info().triggers_dropped (see EventWorker::trigger()).
  bool trigger(bool force = false) { return trigger_run(force, "IntervalWorker::trigger()"); }

 protected:
  virtual bool run(WorkerContext& ctx) = 0;

 private:
  bool execute(WorkerContext& ctx) final {
    return guarded_call(ctx, [&] { return run(ctx); });
  }
};

/// IntervalWorker with a coroutine executor, run on an aloop.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class AsyncIntervalWorker : public Worker {
 public:
  explicit AsyncIntervalWorker(Supervisor& sv, IntervalOptions o)
      : Worker(sv, Mode::interval, true, detail::interval_settings(o)) {}

  /// See IntervalWorker::trigger().
  bool trigger(bool force = false) { return trigger_run(force, "AsyncIntervalWorker::trigger()"); }

 protected:
  virtual boost::asio::awaitable<bool> run(WorkerContext& ctx) = 0;

 private:
  boost::asio::awaitable<bool> execute_async(WorkerContext& ctx) final {
    return guarded_call_async(ctx, [this, &ctx] { return run(ctx); });
  }
};

/// Builds an interval worker from a callable ((WorkerContext&) or ();
/// void, bool or awaitable<void|bool>). Not started.
/// @throws OptionsError for a taken name or bad options (see IntervalWorker;
///         an `.aloop` when f is blocking).
template <class F>
[[nodiscard]] auto interval_worker(Supervisor& sv, F f, IntervalOptions o) {
  if constexpr (detail::is_awaitable<detail::executor_result_t<F>>::value)
    return std::unique_ptr<AsyncIntervalWorker>(
        new detail::FnAsyncWorker<AsyncIntervalWorker, F>(sv, std::move(f), std::move(o)));
  else
    return std::unique_ptr<IntervalWorker>(
        new detail::FnWorker<IntervalWorker, F>(sv, std::move(f), std::move(o)));
}

}  // namespace atask
