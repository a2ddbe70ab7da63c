#pragma once
/// @file
/// EventWorker / AsyncEventWorker: run the executor when triggered, and the
/// event_worker() factory.
///
/// @code
///   auto flush = atask::event_worker(sv, [] { write_cache(); }, {.name = "flush"});
///   flush->start();
///   flush->trigger();          // runs soon; triggers during a run coalesce into one more run
///   flush->trigger(true);      // forced: queued as a run of its own
/// @endcode

#include <atask/workers/background.hpp>

namespace atask {

/// Runs its blocking executor on the pool each time it is triggered.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class EventWorker : public Worker {
 public:
  explicit EventWorker(Supervisor& sv, WorkerOptions o = {})
      : Worker(sv, Mode::event, false, detail::WorkerSettings::common(o)) {}

  /// Asks for a run. Idle: the executor runs at once. While a run is in
  /// progress: triggers coalesce into one more run; a forced trigger queues
  /// a run of its own. Returns false (a no-op) when the worker is not active.
  ///
  /// True means the run is pending, not that it will happen: a stop() or
  /// restart() before it begins drops it (the running call finishes, pending
  /// runs do not start). Each dropped run that a trigger asked for counts in
  /// info().triggers_dropped (triggers that coalesced into one run count
  /// once).
  bool trigger(bool force = false) { return trigger_run(force, "EventWorker::trigger()"); }

 protected:
  /// The executor. Return false to stop the worker.
  virtual bool run(WorkerContext& ctx) = 0;

 private:
  bool execute(WorkerContext& ctx) final {
    return guarded_call(ctx, [&] { return run(ctx); });
  }
};

/// EventWorker with a coroutine executor, run on an aloop.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class AsyncEventWorker : public Worker {
 public:
  explicit AsyncEventWorker(Supervisor& sv, WorkerOptions o = {})
      : Worker(sv, Mode::event, true, detail::WorkerSettings::common(o)) {}

  /// See EventWorker::trigger().
  bool trigger(bool force = false) { return trigger_run(force, "AsyncEventWorker::trigger()"); }

 protected:
  virtual boost::asio::awaitable<bool> run(WorkerContext& ctx) = 0;

 private:
  boost::asio::awaitable<bool> execute_async(WorkerContext& ctx) final {
    return guarded_call_async(ctx, [this, &ctx] { return run(ctx); });
  }
};

/// Builds an event worker from a callable ((WorkerContext&) or (); void,
/// bool or awaitable<void|bool>). Not started.
/// @throws OptionsError for a taken name, or for an `.aloop` when f is
///         blocking (it runs on the pool, never on an aloop).
template <class F>
[[nodiscard]] auto event_worker(Supervisor& sv, F f, WorkerOptions o = {}) {
  if constexpr (detail::is_awaitable<detail::executor_result_t<F>>::value)
    return std::unique_ptr<AsyncEventWorker>(
        new detail::FnAsyncWorker<AsyncEventWorker, F>(sv, std::move(f), std::move(o)));
  else
    return std::unique_ptr<EventWorker>(new detail::FnWorker<EventWorker, F>(sv, std::move(f), std::move(o)));
}

}  // namespace atask
