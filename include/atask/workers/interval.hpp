#pragma once
/// @file
/// Interval workers: ScheduleSource (a run on a schedule, and on a
/// trigger), IntervalWorker (blocking executor on the pool) and
/// AsyncIntervalWorker (coroutine executor on an aloop), and the
/// interval_worker() factory.
///
/// @code
///   auto beat = atask::interval_worker(sv, [] { send_heartbeat(); },
///                                      {.priority = atask::Priority::high, .interval = 1s});
///   beat->start();
///   beat->trigger();   // one run now; the schedule stays as it was
/// @endcode

#include <atask/workers/event.hpp>

#include <chrono>
#include <memory>

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
struct ScheduleAnchor;
struct ScheduleTimer;
}  // namespace detail

/// The source of an interval worker: runs on a schedule (fixed rate or
/// fixed gap, see IntervalOptions), and on trigger() as an event worker.
/// The schedule lives in the supervisor's io_context (an Asio timer).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class ScheduleSource : public TriggerSource {
 public:
  using options_type = IntervalOptions;
  using items = detail::ItemList<>;

 protected:
  /// @throws OptionsError for interval <= 0 without a delay, interval with
  ///         delay, negative delay or delay_before (or a taken name, or an
  ///         aloop on a blocking executor).
  ScheduleSource(WorkerInit init, bool coroutine, IntervalOptions o);
  ~ScheduleSource() override;

 private:
  struct Schedule {
    std::chrono::nanoseconds interval{0}, delay{0}, delay_before{0};
  };
  static void check(const Schedule& s, const std::string& where);

  void check_start(const StartOptions& overrides, const std::string& where) const override;
  void apply_start_locked(const StartOptions& overrides) override;
  void started_locked() override;
  void run_ended_locked() override;
  void stopping_locked() override;
  void triggered_locked() override;
  void supervisor_gone_locked() noexcept override;
  void add_info_locked(WorkerInfo& info) const override;

  Schedule with_overrides(const StartOptions& o) const;
  void arm_locked(std::chrono::steady_clock::time_point when);
  void cancel_locked() noexcept;
  void on_timer(std::uint64_t gen) noexcept;

  const Schedule base_;                             // as constructed
  Schedule cur_;                                    // in force for this active period (m_)
  std::shared_ptr<detail::ScheduleAnchor> anchor_;  // what timer handlers reach this object through
  std::unique_ptr<detail::ScheduleTimer> timer_;    // m_; null once the supervisor is gone
  std::chrono::steady_clock::time_point next_due_{};
  std::uint64_t timer_gen_ = 0;
  std::uint64_t skipped_ = 0;
};

/// Runs its executor `bool run(WorkerContext&)` on the pool on a schedule.
using IntervalWorker = BasicWorker<ScheduleSource, Blocking>;
/// IntervalWorker with a coroutine executor on an aloop.
using AsyncIntervalWorker = BasicWorker<ScheduleSource, Coroutine>;

/// Builds an interval worker from a callable ((WorkerContext&) or ();
/// void, bool or awaitable<void|bool>). Not started.
/// @throws OptionsError for a taken name or bad options (see
///         ScheduleSource; an `.aloop` when f is blocking).
template <class F>
[[nodiscard]] auto interval_worker(Supervisor& sv, F f, IntervalOptions o) {
  return detail::make_fn_worker<BasicWorker<ScheduleSource, detail::form_of_t<F>>>(sv, std::move(f),
                                                                                   std::move(o));
}

}  // namespace atask
