#pragma once
/// @file
/// Event workers: TriggerSource (a run per trigger), EventWorker (blocking
/// executor on the pool) and AsyncEventWorker (coroutine executor on an
/// aloop), the event_worker() factory, and atask::trigger() for any
/// triggerable worker held as a Worker.
///
/// @code
///   auto flush = atask::event_worker(sv, [] { write_cache(); }, {.name = "flush"});
///   flush->start();
///   flush->trigger();                            // runs soon; triggers during a run coalesce into one more
///   run flush->trigger(atask::TriggerMode::force);   // queued as a run of its own
/// @endcode

#include <atask/workers/basic_worker.hpp>
#include <atask/workers/detail/fn_worker.hpp>

namespace atask {

/// How trigger() asks for a run.
enum class TriggerMode : unsigned char {
  coalesce,  ///< one more run after the one in progress, however many triggers came meanwhile
  force      ///< a run of its own, queued behind the runs already asked for
};
BOOST_DESCRIBE_ENUM(TriggerMode, coalesce, force)

/// The source of an event worker (and, through ScheduleSource, of an
/// interval worker): a run for each trigger.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class TriggerSource : public Worker {
 public:
  using options_type = WorkerOptions;
  using items = detail::ItemList<>;

  /// Asks for a run. Idle: the executor runs at once. While a run is in
  /// progress: coalescing triggers make one more run; a forced trigger
  /// queues a run of its own. Returns false (a no-op) when the worker is not
  /// active.
  ///
  /// True means the run is pending, not that it will happen: a stop() or
  /// restart() before it begins drops it (the running call finishes, pending
  /// runs do not start). Each dropped run that a trigger asked for counts in
  /// info().triggers_dropped (triggers that coalesced into one run count
  /// once).
  bool trigger(TriggerMode mode = TriggerMode::coalesce);

 protected:
  TriggerSource(WorkerInit init, bool coroutine, WorkerOptions o)
      : TriggerSource(std::move(init), WorkerKind::event, coroutine, detail::WorkerSettings::common(o)) {}
  /// For sources built on this one (ScheduleSource).
  TriggerSource(WorkerInit init, WorkerKind kind, bool coroutine, detail::WorkerSettings s)
      : Worker(std::move(init), kind, coroutine, std::move(s)) {}

  /// A trigger asked for a run (m_ held), before the worker looks for work.
  virtual void triggered_locked() {}
  /// A run that is not a trigger's (a schedule's tick): false when one was
  /// already pending, so the new one coalesced into it.
  bool add_run_locked() noexcept;
  /// Runs asked for and not yet begun.
  std::size_t pending_runs_locked() const noexcept { return pending_runs_; }

  bool take_run_locked() override;
  void apply_start_locked(const StartOptions& overrides) override;
  void stopping_locked() override;
  void add_info_locked(WorkerInfo& info) const override;

 private:
  std::size_t pending_runs_ = 0;        // runs asked for
  std::size_t triggered_runs_ = 0;      // how many of pending_runs_ a trigger() asked for
  std::uint64_t triggers_dropped_ = 0;  // trigger()ed runs a stop dropped
};

/// Runs its executor `bool run(WorkerContext&)` on the pool each time it is
/// triggered.
using EventWorker = BasicWorker<TriggerSource, Blocking>;
/// EventWorker with a coroutine executor `awaitable<bool> run(WorkerContext&)`
/// on an aloop.
using AsyncEventWorker = BasicWorker<TriggerSource, Coroutine>;

/// TriggerSource::trigger() on `w` held as a Worker (an event or interval
/// worker, either form).
/// @throws LifecycleError naming the worker and its kind when it cannot be
///         triggered.
bool trigger(Worker& w, TriggerMode mode = TriggerMode::coalesce);

/// Builds an event worker from a callable ((WorkerContext&) or (); void,
/// bool or awaitable<void|bool>). Not started.
/// @throws OptionsError for a taken name, or for an `.aloop` when f is
///         blocking (it runs on the pool, never on an aloop).
template <class F>
[[nodiscard]] auto event_worker(Supervisor& sv, F f, WorkerOptions o = {}) {
  return detail::make_fn_worker<BasicWorker<TriggerSource, detail::form_of_t<F>>>(sv, std::move(f),
                                                                                  std::move(o));
}

}  // namespace atask
