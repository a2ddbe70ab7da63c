#pragma once
/// @file
/// Timers (async jobs): call a function on an aloop after a delay
/// (after), at a wall-clock time (at), at a fixed rate (every) or on a cron
/// schedule (cron) - Celery's apply_after / apply_at / apply_interval and
/// beat, atasker's async job scheduler.
/// Each returns a move-only Timer whose destructor cancels.
///
/// @code
///   atask::Timer beat = atask::every(sv, 1s, [] { spdlog::info("alive"); });
///   atask::Timer once = atask::after(loop, 50ms, []() -> asio::awaitable<void> { co_await ping(); });
///   atask::Timer eta = atask::at(sv, std::chrono::system_clock::now() + 1h, [] { report(); });
///   atask::Timer nightly = atask::cron(sv, "30 2 * * *", [] { rotate(); }, {.time_zone = "Europe/Berlin"});
///   once.cancel();  // no call starts after this returns
/// @endcode
///
/// The callable runs on the aloop's thread. A plain callable must be short:
/// it holds up everything else on that aloop while it runs. A callable
/// returning boost::asio::awaitable<void> is co_awaited there instead, so it
/// may wait without holding the thread. Either may take an
/// `atask::TimerControl&` to cancel its own timer or read its counters.
/// See docs/timers.md for the exact guarantees.

#include <atask/aloop/aloop.hpp>
#include <atask/timers/cron.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace spdlog {
class logger;
}

namespace atask {

class Supervisor;

/// Options of one timer; pass them as designated initializers.
struct TimerOptions {
  /// Shown in log lines ("atask::every() 'name' - call #3 threw: ...").
  std::string name{};
  /// every() only: the first call is due at once (then one per period from
  /// there) instead of one period after every() returns. OptionsError with
  /// after() and at().
  bool immediate = false;
  /// Supervisor overloads only: the aloop to run on, by name; empty = the
  /// supervisor's default aloop. OptionsError with the Aloop overloads.
  std::string aloop{};
  /// Where exceptions thrown by the callable are logged. nullptr = the
  /// supervisor's logger (Supervisor overloads), else spdlog's logger named
  /// "atask" if one is registered, else spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger{};
  /// cron() with an expression only: the IANA time zone the expression is
  /// read in ("Europe/Berlin"); empty = "UTC". OptionsError elsewhere (a
  /// CronSchedule carries its own zone).
  std::string time_zone{};
};

namespace detail {
class TimerState;
}

/// Handed to a callable that takes `atask::TimerControl&`: the timer as seen
/// from inside its own call. Valid during that call only.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Unsafe: use it on the aloop
/// thread, inside the call.
class TimerControl {
 public:
  explicit TimerControl(detail::TimerState& s) noexcept : s_(&s) {}
  TimerControl(const TimerControl&) = delete;
  TimerControl& operator=(const TimerControl&) = delete;

  /// Cancels the timer: no further call starts; the current call goes on to
  /// its end. Returns true if that prevented a future call (every()); false
  /// for after()/at(), whose only call is this one.
  bool cancel() noexcept;
  /// Calls completed before this one (returned or threw).
  std::uint64_t runs() const noexcept;
  std::uint64_t errors() const noexcept;
  std::uint64_t skipped() const noexcept;

 private:
  detail::TimerState* s_;
};

/// A scheduled call (after, at) or series of calls (every, cron). Move-only; the
/// destructor (and a move-assignment onto it) cancels the timer it owns.
/// A default-constructed or moved-from Timer is empty: cancel() returns
/// false, active() false, the counters 0.
///
/// What is guaranteed:
///  - No call starts after cancel() has returned (on any thread). A call
///    that had already started is not interrupted: it runs to its end on
///    the aloop, possibly after cancel() returned. cancel() never waits for
///    it, so it may be called from inside the callable (see TimerControl)
///    and from any thread.
///  - every() and cron() never overlap calls: a tick that comes due while a call is
///    still running (or while the aloop is busy) is skipped and counted in
///    skipped(), not queued up.
///  - When the timer is over (canceled, its last call done, or its aloop
///    stopped), the callable is destroyed - on the aloop thread, or on the
///    thread stopping the aloop. A timer whose aloop stops ends without a
///    call, and its handle stays safe to use (cancel() then returns false).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, also concurrently with the
/// timer's calls, except the Timer's own destruction or assignment (as for
/// any object).
class [[nodiscard]] Timer {
 public:
  Timer() noexcept = default;
  /// Adopts a state (library use).
  explicit Timer(std::shared_ptr<detail::TimerState> s) noexcept : s_(std::move(s)) {}
  Timer(Timer&&) noexcept = default;
  Timer& operator=(Timer&& o) noexcept {
    if (this != &o) {
      cancel();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  /// cancel().
  ~Timer() { cancel(); }

  /// Stops the timer: no call starts after cancel() returns. Returns true
  /// if that prevented at least one call - false when the timer was
  /// already canceled, over (after/at already started its call, the aloop
  /// stopped) or empty. Never blocks on a running call.
  bool cancel() noexcept;
  /// True while a call may still start (cancel() would return true).
  bool active() const noexcept;
  /// Calls completed, whether they returned or threw.
  std::uint64_t runs() const noexcept;
  /// Of runs(), those that ended with an exception (each is also logged).
  std::uint64_t errors() const noexcept;
  /// every(), cron(): ticks not run because the previous call (or the aloop) was
  /// still busy when they came due.
  std::uint64_t skipped() const noexcept;
  /// False for an empty Timer.
  bool valid() const noexcept { return s_ != nullptr; }

 private:
  std::shared_ptr<detail::TimerState> s_;
};

namespace detail {

/// The type-erased callable of a timer (library use).
class TimerCall {
 public:
  virtual ~TimerCall() = default;
  virtual bool is_coroutine() const noexcept = 0;
  /// Plain callables.
  virtual void call(TimerControl& c) = 0;
  /// Coroutine callables.
  virtual boost::asio::awaitable<void> call_async(TimerControl& c) = 0;
};

template <class R>
struct is_any_awaitable : std::false_type {};
template <class T, class E>
struct is_any_awaitable<boost::asio::awaitable<T, E>> : std::true_type {};

template <class F>
class TimerCallOf final : public TimerCall {
  static constexpr bool takes_control = std::is_invocable_v<F&, TimerControl&>;
  static_assert(takes_control || std::is_invocable_v<F&>,
                "atask timers: the callable must be callable as fn() or fn(atask::TimerControl&)");
  using R = typename std::conditional_t<takes_control, std::invoke_result<F&, TimerControl&>,
                                        std::invoke_result<F&>>::type;
  static_assert(std::is_void_v<R> || std::is_same_v<R, boost::asio::awaitable<void>>,
                "atask timers: the callable must return void (a plain call) or boost::asio::awaitable<void> "
                "(a coroutine co_awaited on the aloop)");

 public:
  template <class G>
  explicit TimerCallOf(G&& g) : f_(std::forward<G>(g)) {}

  bool is_coroutine() const noexcept override { return !std::is_void_v<R>; }
  void call(TimerControl& c) override {
    if constexpr (std::is_void_v<R>) invoke(c);
  }
  boost::asio::awaitable<void> call_async(TimerControl& c) override {
    if constexpr (std::is_void_v<R>)
      return {};  // never called: is_coroutine() is false
    else
      return invoke(c);
  }

 private:
  R invoke(TimerControl& c) {
    if constexpr (takes_control)
      return f_(c);
    else
      return f_();
  }
  F f_;
};

template <class F>
std::unique_ptr<TimerCall> make_timer_call(F&& f) {
  return std::make_unique<TimerCallOf<std::decay_t<F>>>(std::forward<F>(f));
}

/// A user duration as steady_clock::duration, rounded up, saturated at
/// about 70 years (so that hours::max() means "never", not overflow).
/// NaN becomes -1 tick, which every check rejects.
template <class Rep, class Period>
std::chrono::steady_clock::duration timer_duration(std::chrono::duration<Rep, Period> d) noexcept {
  using D = std::chrono::steady_clock::duration;
  using LD = std::chrono::duration<long double>;
  constexpr D cap = D::max() / 4;
  const LD v = std::chrono::duration_cast<LD>(d);
  if (!(v == v)) return D(-1);
  if (v >= std::chrono::duration_cast<LD>(cap)) return cap;
  if (v <= -std::chrono::duration_cast<LD>(cap)) return -cap;
  return std::chrono::ceil<D>(d);
}

enum class TimerKind : unsigned char { after, every, at, cron };

/// What to schedule (library use).
struct TimerSpec {
  TimerKind kind;
  std::chrono::steady_clock::duration delay{};   ///< after: delay; every: period
  std::chrono::system_clock::time_point when{};  ///< at
  std::string_view cron_expression{};            ///< cron, parsed with TimerOptions::time_zone
  const CronSchedule* schedule = nullptr;        ///< cron, already parsed (instead of the expression)
};

Timer start_timer(Aloop& loop, const TimerSpec& spec, std::unique_ptr<TimerCall> fn, TimerOptions options);
Timer start_timer(Supervisor& sv, const TimerSpec& spec, std::unique_ptr<TimerCall> fn, TimerOptions options);

}  // namespace detail

/// Calls `fn` once on `loop`, `delay` from now (0 = as soon as the loop
/// gets to it).
///
/// May be called from any thread, the aloop's own included.
/// @throws OptionsError for a negative delay or misused options.
/// @throws LifecycleError when the aloop is not running (never started, or
///         stopped).
template <class Rep, class Period, class F>
Timer after(Aloop& loop, std::chrono::duration<Rep, Period> delay, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(loop, {.kind = detail::TimerKind::after, .delay = detail::timer_duration(delay)},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// after() on `sv`'s default aloop (or the one `options.aloop` names),
/// logging with `sv`'s logger. Also throws what Supervisor::default_aloop()
/// and Supervisor::aloop() throw.
template <class Rep, class Period, class F>
Timer after(Supervisor& sv, std::chrono::duration<Rep, Period> delay, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(sv, {.kind = detail::TimerKind::after, .delay = detail::timer_duration(delay)},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// Calls `fn` on `loop` at a fixed rate: at start + k * period for k = 1,
/// 2, ... (k = 0 too with `.immediate`), where start is when every() was
/// called. The schedule never drifts with the calls' run time. Calls never
/// overlap: a tick that comes due while a call still runs is skipped and
/// counted (Timer::skipped()), not queued up. An exception from fn is
/// logged and counted, and the calls go on.
///
/// May be called from any thread, the aloop's own included.
///
/// @code
///   auto t = atask::every(loop, 100ms, [&] { poll_once(); }, {.name = "poller"});
/// @endcode
///
/// @throws OptionsError when `period` is not > 0 or for misused options.
/// @throws LifecycleError when the aloop is not running (never started, or
///         stopped).
template <class Rep, class Period, class F>
Timer every(Aloop& loop, std::chrono::duration<Rep, Period> period, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(loop,
                             {.kind = detail::TimerKind::every, .delay = detail::timer_duration(period)},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// every() on `sv`'s default aloop (or the one `options.aloop` names),
/// logging with `sv`'s logger.
template <class Rep, class Period, class F>
Timer every(Supervisor& sv, std::chrono::duration<Rep, Period> period, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(sv, {.kind = detail::TimerKind::every, .delay = detail::timer_duration(period)},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// Calls `fn` once on `loop` at the wall-clock time `when`; a time in the
/// past means at once. `when` becomes a steady-clock delay when at() is
/// called: changing the system clock afterwards does not move the call.
///
/// May be called from any thread, the aloop's own included.
/// @throws OptionsError for misused options.
/// @throws LifecycleError when the aloop is not running (never started, or
///         stopped).
template <class F>
Timer at(Aloop& loop, std::chrono::system_clock::time_point when, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(loop, {.kind = detail::TimerKind::at, .when = when},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// at() on `sv`'s default aloop (or the one `options.aloop` names),
/// logging with `sv`'s logger.
template <class F>
Timer at(Supervisor& sv, std::chrono::system_clock::time_point when, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(sv, {.kind = detail::TimerKind::at, .when = when},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// Calls `fn` on `loop` at each fire time of the cron expression `expr`
/// (see CronSchedule for the syntax and the daylight-saving rules), read
/// in `options.time_zone` (default UTC). Like every(), calls never
/// overlap: a fire time that comes due while a call still runs is skipped
/// and counted (Timer::skipped()). An exception from fn is logged and
/// counted, and the calls go on. Each fire time becomes a steady-clock
/// delay when it is armed: a system clock step moves the following ones.
///
/// May be called from any thread, the aloop's own included.
///
/// @code
///   auto t = atask::cron(loop, "*/5 * * * *", [&] { sweep(); }, {.name = "sweeper"});
/// @endcode
///
/// @throws OptionsError for a malformed expression, an unknown time zone,
///         or misused options.
/// @throws LifecycleError when the aloop is not running (never started, or
///         stopped).
template <class F>
Timer cron(Aloop& loop, std::string_view expr, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(loop, {.kind = detail::TimerKind::cron, .cron_expression = expr},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// cron() on `sv`'s default aloop (or the one `options.aloop` names),
/// logging with `sv`'s logger.
template <class F>
Timer cron(Supervisor& sv, std::string_view expr, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(sv, {.kind = detail::TimerKind::cron, .cron_expression = expr},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// cron() with a schedule parsed beforehand (it carries its time zone:
/// `options.time_zone` must be empty).
template <class F>
Timer cron(Aloop& loop, const CronSchedule& schedule, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(loop, {.kind = detail::TimerKind::cron, .schedule = &schedule},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

/// cron() with a parsed schedule on `sv`'s default aloop (or the one
/// `options.aloop` names).
template <class F>
Timer cron(Supervisor& sv, const CronSchedule& schedule, F&& fn, TimerOptions options = {}) {
  return detail::start_timer(sv, {.kind = detail::TimerKind::cron, .schedule = &schedule},
                             detail::make_timer_call(std::forward<F>(fn)), std::move(options));
}

}  // namespace atask
