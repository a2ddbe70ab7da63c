#include <atask/timers/timer.hpp>

#include <atask/core/errors.hpp>
#include <atask/supervisor/supervisor.hpp>

#include "util/platform.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

namespace atask {

namespace detail {

class TimerDriver;

// What a Timer handle and its driver share. The handle may outlive the
// aloop (and the driver); the driver may outlive the handle (until its
// wait ends on the aloop).
class TimerState {
 public:
  // No call may start any more. Written under m_, read lock-free.
  std::atomic<bool> over{false};
  std::atomic<std::uint64_t> runs{0}, errors{0}, skipped{0};

  bool cancel() noexcept;

  // Driver side (aloop thread): may a call start now? `last` (after, at)
  // makes it the only one.
  bool begin_call(bool last) {
    std::lock_guard lk(m_);
    if (over.load(std::memory_order_relaxed)) return false;
    if (last) over.store(true, std::memory_order_release);
    return true;
  }

  void attach(const std::shared_ptr<TimerDriver>& d, Aloop& loop) {
    std::lock_guard lk(m_);
    driver_ = d;
    loop_ = &loop;
  }

  // The driver is being destroyed: its timer ran out of calls, or its aloop
  // stopped. Taking m_ here is what makes cancel() safe: while cancel()
  // holds m_ and sees the driver alive, the driver's destruction - and so
  // the destruction of the io_context that holds it, and of the Aloop that
  // owns that - cannot complete.
  void driver_gone() noexcept {
    std::lock_guard lk(m_);
    over.store(true, std::memory_order_release);
  }

 private:
  std::mutex m_;
  std::weak_ptr<TimerDriver> driver_;  // under m_
  Aloop* loop_ = nullptr;              // under m_; valid while driver_ is alive
};

// Owns the callable and the steady_timer, and is owned by the coroutine
// that runs the timer on the aloop: when the aloop is stopped, destroying
// that coroutine destroys the driver, before the io_context its timer uses.
class TimerDriver {
 public:
  using clock = std::chrono::steady_clock;

  TimerDriver(std::shared_ptr<TimerState> st, std::unique_ptr<TimerCall> fn, clock::time_point first,
              clock::duration period, const char* call, std::string name, std::shared_ptr<spdlog::logger> log,
              std::optional<CronSchedule> cron = std::nullopt, std::chrono::system_clock::time_point due = {})
      : st_(std::move(st)),
        fn_(std::move(fn)),
        next_(first),
        period_(period),
        cron_(std::move(cron)),
        due_(due),
        call_(call),
        name_(std::move(name)),
        log_(std::move(log)) {}
  TimerDriver(const TimerDriver&) = delete;
  TimerDriver& operator=(const TimerDriver&) = delete;
  // The callable and the timer are destroyed after this, on the same thread.
  ~TimerDriver() { st_->driver_gone(); }

  static boost::asio::awaitable<void> run(std::shared_ptr<TimerDriver> self);

  // Aloop thread only.
  void cancel_wait() noexcept {
    if (timer_) timer_->cancel();
  }

 private:
  bool periodic() const noexcept { return period_ != clock::duration::zero() || cron_; }
  void finish_call(std::exception_ptr e) noexcept;
  // False when the timer has no next call.
  bool advance() noexcept;
  bool advance_cron() noexcept;

  std::shared_ptr<TimerState> st_;
  std::unique_ptr<TimerCall> fn_;
  // Made on the aloop thread by run(): building it elsewhere would touch
  // an io_context that might be stopping.
  std::optional<boost::asio::steady_timer> timer_;
  clock::time_point next_;
  clock::duration period_;  // zero: one call (after, at) or cron
  std::optional<CronSchedule> cron_;
  std::chrono::system_clock::time_point due_;  // cron: the wall time next_ stands for
  const char* call_;
  std::string name_;
  std::shared_ptr<spdlog::logger> log_;
};

namespace {

boost::asio::awaitable<void> cancel_wait(std::weak_ptr<TimerDriver> w) {
  if (auto d = w.lock()) d->cancel_wait();
  co_return;
}

}  // namespace

boost::asio::awaitable<void> TimerDriver::run(std::shared_ptr<TimerDriver> self) {
  TimerDriver& d = *self;
  d.timer_.emplace(co_await boost::asio::this_coro::executor);
  for (;;) {
    // A cancel() from another thread that set `over` after this check
    // cancels the wait armed below: its cancel_wait runs on this thread,
    // after this handler.
    if (d.st_->over.load(std::memory_order_acquire)) co_return;
    d.timer_->expires_at(d.next_);
    boost::system::error_code ec;
    co_await d.timer_->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec == boost::asio::error::operation_aborted) continue;  // canceled: the check above ends it
    if (!d.st_->begin_call(!d.periodic())) co_return;
    TimerControl control(*d.st_);
    std::exception_ptr error;
    if (d.fn_->is_coroutine()) {
      try {
        co_await d.fn_->call_async(control);
      } catch (...) {
        error = std::current_exception();
      }
    } else {
      try {
        d.fn_->call(control);
      } catch (...) {
        error = std::current_exception();
      }
    }
    d.finish_call(error);
    if (!d.periodic() || !d.advance()) co_return;
  }
}

void TimerDriver::finish_call(std::exception_ptr e) noexcept {
  if (e) {
    // errors before runs: whoever reads runs() == n sees the errors among them.
    const auto n = st_->runs.load(std::memory_order_relaxed) + 1;
    st_->errors.fetch_add(1, std::memory_order_release);
    try {
      log_->error("{}{} - call #{} threw: {}{}", call_, name_.empty() ? std::string() : " '" + name_ + "'", n,
                  describe(e), periodic() ? " (the timer goes on)" : "");
    } catch (...) {  // logging must not end the timer
    }
  }
  st_->runs.fetch_add(1, std::memory_order_release);
}

// Fixed rate: the next tick is the first one of start + k * period that is
// still ahead; those that came due during the call (or while the aloop was
// busy elsewhere) are counted as skipped, not run late.
bool TimerDriver::advance() noexcept {
  if (cron_) return advance_cron();
  next_ += period_;
  const auto now = clock::now();
  if (next_ <= now) {
    const auto k = (now - next_) / period_ + 1;
    next_ += k * period_;
    st_->skipped.fetch_add(static_cast<std::uint64_t>(k), std::memory_order_release);
  }
  return true;
}

// The fire time after the one just run, counting (as skipped) those that
// came due during the call. Computed from the previous fire time, not from
// now: a steady clock that runs ahead of the system clock must not make the
// same fire time come twice.
bool TimerDriver::advance_cron() noexcept {
  try {
    const auto wall = std::chrono::system_clock::now();
    auto next = cron_->next_after(due_);
    std::uint64_t k = 0;
    for (; next <= wall && k < 1000; ++k) next = cron_->next_after(next);
    if (next <= wall) next = cron_->next_after(wall);  // a long stall: stop counting one by one
    if (k) st_->skipped.fetch_add(k, std::memory_order_release);
    due_ = next;
    next_ = clock::now() + timer_duration(next - wall);
    return true;
  } catch (const std::exception& e) {
    try {
      log_->error("{}{} - no next fire time, the timer ends: {}", call_,
                  name_.empty() ? std::string() : " '" + name_ + "'", e.what());
    } catch (...) {
    }
    return false;
  }
}

bool TimerState::cancel() noexcept {
  std::shared_ptr<TimerDriver> keep;  // released after lk: destroying the driver takes m_
  std::lock_guard lk(m_);
  if (over.load(std::memory_order_relaxed)) return false;
  over.store(true, std::memory_order_release);
  // Expired while `over` was still unset: the driver is being destroyed by
  // its aloop's stop, so no call was coming anyway.
  if (driver_.expired()) return false;
  // From here the flag alone guarantees that no call starts; cancelling the
  // pending wait only ends the driver (and frees the callable) now instead
  // of at the wait's expiry. The steady_timer may only be touched on the
  // aloop thread, so from elsewhere that goes through Aloop::spawn, which
  // refuses (under the Aloop's lock) once the aloop is stopping.
  try {
    if (loop_->on_thread()) {
      keep = driver_.lock();
      if (keep) keep->cancel_wait();
    } else {
      loop_->spawn(cancel_wait(driver_), boost::asio::cancellation_slot{});
    }
  } catch (...) {  // aloop stopping (it destroys the wait) or out of memory (the wait ends at its expiry)
  }
  return true;
}

namespace {

const char* call_name(TimerKind k) noexcept {
  switch (k) {
    case TimerKind::after:
      return "atask::after()";
    case TimerKind::every:
      return "atask::every()";
    case TimerKind::at:
      return "atask::at()";
    case TimerKind::cron:
      return "atask::cron()";
  }
  return "atask timer";
}

std::string prefix(const char* call, const TimerOptions& o) {
  return o.name.empty() ? std::string(call) : std::string(call) + " '" + o.name + "'";
}

void validate(const TimerSpec& spec, const TimerOptions& o) {
  const char* call = call_name(spec.kind);
  using D = std::chrono::steady_clock::duration;
  if (spec.kind == TimerKind::after && spec.delay < D::zero())
    throw OptionsError(prefix(call, o) + " - delay must be >= 0");
  if (spec.kind == TimerKind::every && spec.delay <= D::zero())
    throw OptionsError(prefix(call, o) + " - period must be > 0");
  if (o.immediate && spec.kind != TimerKind::every)
    throw OptionsError(prefix(call, o) + " - TimerOptions::immediate is for every() only");
  if (!o.time_zone.empty() && (spec.kind != TimerKind::cron || spec.schedule))
    throw OptionsError(prefix(call, o) +
                       " - TimerOptions::time_zone is for cron() with an expression (a CronSchedule "
                       "carries its own zone)");
}

std::optional<CronSchedule> schedule_of(const TimerSpec& spec, const TimerOptions& o) {
  if (spec.kind != TimerKind::cron) return std::nullopt;
  if (spec.schedule) return *spec.schedule;
  try {
    return CronSchedule::parse(spec.cron_expression, o.time_zone.empty() ? "UTC" : o.time_zone);
  } catch (const OptionsError& e) {
    throw OptionsError(prefix(call_name(spec.kind), o) + " - " + e.what());
  }
}

Timer start_on(Aloop& loop, const TimerSpec& spec, std::unique_ptr<TimerCall> fn, TimerOptions o,
               std::shared_ptr<spdlog::logger> log, std::optional<CronSchedule> cron) {
  using clock = std::chrono::steady_clock;
  const char* call = call_name(spec.kind);
  const auto now = clock::now();
  clock::time_point first = now;
  clock::duration period{};
  std::chrono::system_clock::time_point due{};
  switch (spec.kind) {
    case TimerKind::after:
      first = now + spec.delay;
      break;
    case TimerKind::every:
      period = spec.delay;
      first = o.immediate ? now : now + period;
      break;
    case TimerKind::at: {
      // Converted once: a system clock step later does not move the call.
      const auto wall = std::chrono::system_clock::now();
      if (spec.when > wall) first = now + timer_duration(spec.when - wall);
      break;
    }
    case TimerKind::cron: {
      const auto wall = std::chrono::system_clock::now();
      due = cron->next_after(wall);
      first = now + timer_duration(due - wall);
      break;
    }
  }
  auto st = std::make_shared<TimerState>();
  auto driver = std::make_shared<TimerDriver>(st, std::move(fn), first, period, call, o.name, std::move(log),
                                              std::move(cron), due);
  st->attach(driver, loop);
  try {
    loop.spawn(TimerDriver::run(std::move(driver)), boost::asio::cancellation_slot{});
  } catch (const LifecycleError&) {
    throw LifecycleError(prefix(call, o) + " - aloop '" + loop.name() + "' is " +
                         (loop.stopped() ? "stopped" : "not started"));
  }
  return Timer(std::move(st));
}

}  // namespace

Timer start_timer(Aloop& loop, const TimerSpec& spec, std::unique_ptr<TimerCall> fn, TimerOptions o) {
  validate(spec, o);
  auto cron = schedule_of(spec, o);
  if (!o.aloop.empty())
    throw OptionsError(prefix(call_name(spec.kind), o) + " - TimerOptions::aloop ('" + o.aloop +
                       "') is for the Supervisor overloads; this one was given an Aloop");
  std::shared_ptr<spdlog::logger> log = o.logger;
  if (!log) log = spdlog::get("atask");
  if (!log) log = spdlog::default_logger();
  return start_on(loop, spec, std::move(fn), std::move(o), std::move(log), std::move(cron));
}

Timer start_timer(Supervisor& sv, const TimerSpec& spec, std::unique_ptr<TimerCall> fn, TimerOptions o) {
  validate(spec, o);
  auto cron = schedule_of(spec, o);
  Aloop& loop = o.aloop.empty() ? sv.default_aloop() : sv.aloop(o.aloop);
  std::shared_ptr<spdlog::logger> log = o.logger;
  // Not owned: the driver logs only on the supervisor's aloop, and the
  // supervisor stops (joins) its aloops before its logger goes away.
  if (!log) log = std::shared_ptr<spdlog::logger>(std::shared_ptr<void>(), &sv.logger());
  return start_on(loop, spec, std::move(fn), std::move(o), std::move(log), std::move(cron));
}

}  // namespace detail

// -- handles -----------------------------------------------------------------------

bool TimerControl::cancel() noexcept {
  return s_->cancel();
}
std::uint64_t TimerControl::runs() const noexcept {
  return s_->runs.load(std::memory_order_acquire);
}
std::uint64_t TimerControl::errors() const noexcept {
  return s_->errors.load(std::memory_order_acquire);
}
std::uint64_t TimerControl::skipped() const noexcept {
  return s_->skipped.load(std::memory_order_acquire);
}

bool Timer::cancel() noexcept {
  return s_ ? s_->cancel() : false;
}
bool Timer::active() const noexcept {
  return s_ && !s_->over.load(std::memory_order_acquire);
}
std::uint64_t Timer::runs() const noexcept {
  return s_ ? s_->runs.load(std::memory_order_acquire) : 0;
}
std::uint64_t Timer::errors() const noexcept {
  return s_ ? s_->errors.load(std::memory_order_acquire) : 0;
}
std::uint64_t Timer::skipped() const noexcept {
  return s_ ? s_->skipped.load(std::memory_order_acquire) : 0;
}

}  // namespace atask
