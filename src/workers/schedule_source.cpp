#include <atask/workers/interval.hpp>

#include <boost/asio/steady_timer.hpp>

#include <mutex>

namespace asio = boost::asio;

namespace atask {

namespace detail {

// How a timer handler reaches the source: it holds the anchor and looks at
// `self` under the anchor's mutex, which the source clears before it goes
// (a handler may run after that, with operation_aborted or not). Lock
// order: the anchor's mutex, then the worker's m_ (never the other way).
struct ScheduleAnchor {
  explicit ScheduleAnchor(ScheduleSource* s) : self(s) {}
  std::mutex m;
  ScheduleSource* self;
};

struct ScheduleTimer {
  explicit ScheduleTimer(asio::io_context& ctx) : t(ctx) {}
  asio::steady_timer t;
};

}  // namespace detail

void ScheduleSource::check(const Schedule& s, const std::string& where) {
  if (s.delay.count() < 0) throw OptionsError(where + " - delay must be >= 0");
  if (s.delay_before.count() < 0) throw OptionsError(where + " - delay_before must be >= 0");
  if (s.interval.count() > 0 && s.delay.count() > 0)
    throw OptionsError(
        where +
        " - interval and delay can not be used together (interval: fixed rate; delay: fixed gap "
        "after each run)");
  if (s.interval.count() <= 0 && s.delay.count() == 0)
    throw OptionsError(where + " - interval must be > 0 (or set a delay > 0)");
}

ScheduleSource::ScheduleSource(WorkerInit init, bool coroutine, IntervalOptions o)
    : TriggerSource(std::move(init), WorkerKind::interval, coroutine, detail::WorkerSettings::common(o)),
      base_{o.interval, o.delay, o.delay_before},
      cur_(base_),
      anchor_(std::make_shared<detail::ScheduleAnchor>(this)) {
  check(base_, type_name() + "::" + type_name() + "()");
  timer_ = std::make_unique<detail::ScheduleTimer>(supervisor().io_context());
}

ScheduleSource::~ScheduleSource() {
  // Stopped by now (AutoStop, or a constructor that threw): no handler may
  // reach this object any more, and the timer goes before the supervisor's
  // io_context does.
  {
    std::lock_guard l(anchor_->m);
    anchor_->self = nullptr;
  }
  std::lock_guard lk(m_);
  supervisor_gone_locked();
}

ScheduleSource::Schedule ScheduleSource::with_overrides(const StartOptions& o) const {
  Schedule s = base_;
  // Overriding one of interval and delay replaces the other (atasker:
  // _interval or _delay).
  if (o.interval || o.delay) {
    s.interval = o.interval.value_or(std::chrono::nanoseconds{0});
    s.delay = o.delay.value_or(std::chrono::nanoseconds{0});
  }
  if (o.delay_before) s.delay_before = *o.delay_before;
  return s;
}

void ScheduleSource::check_start(const StartOptions& o, const std::string& where) const {
  check(with_overrides(o), where);
}

void ScheduleSource::apply_start_locked(const StartOptions& o) {
  TriggerSource::apply_start_locked(o);
  cur_ = with_overrides(o);
}

void ScheduleSource::started_locked() {
  const auto now = std::chrono::steady_clock::now();
  if (cur_.delay_before.count() > 0) {
    next_due_ = now + cur_.delay_before;
    arm_locked(next_due_);
    return;
  }
  add_run_locked();
  if (cur_.interval.count() > 0) {
    next_due_ = now + cur_.interval;
    arm_locked(next_due_);
  }
  work_arrived_locked();
}

void ScheduleSource::run_ended_locked() {
  // Fixed gap: the next run is due `delay` after this one returned.
  if (cur_.delay.count() > 0 && pending_runs_locked() == 0)
    arm_locked(std::chrono::steady_clock::now() + cur_.delay);
}

void ScheduleSource::triggered_locked() {
  // Fixed gap: the triggered run happens now; the gap starts again after it.
  if (cur_.delay.count() > 0 && !running_locked()) cancel_locked();
}

void ScheduleSource::stopping_locked() {
  TriggerSource::stopping_locked();
  cancel_locked();
}

void ScheduleSource::supervisor_gone_locked() noexcept {
  cancel_locked();
  timer_.reset();
}

void ScheduleSource::add_info_locked(WorkerInfo& info) const {
  TriggerSource::add_info_locked(info);
  info.skipped_ticks = skipped_;
}

void ScheduleSource::arm_locked(std::chrono::steady_clock::time_point when) {
  if (!timer_) return;
  const std::uint64_t gen = ++timer_gen_;
  timer_->t.expires_at(when);
  timer_->t.async_wait([a = anchor_, gen](boost::system::error_code ec) {
    if (ec) return;
    std::lock_guard l(a->m);
    if (a->self) a->self->on_timer(gen);
  });
}

void ScheduleSource::cancel_locked() noexcept {
  ++timer_gen_;
  if (timer_) timer_->t.cancel();
}

void ScheduleSource::on_timer(std::uint64_t gen) noexcept {
  {
    std::lock_guard lk(m_);
    if (gen != timer_gen_ || !active_locked()) return;
    if (cur_.interval.count() > 0) {
      // Fixed rate: the next tick is on the schedule, whatever time it is.
      if (!add_run_locked()) ++skipped_;
      const auto now = std::chrono::steady_clock::now();
      next_due_ += cur_.interval;
      while (next_due_ <= now) {
        next_due_ += cur_.interval;
        ++skipped_;
      }
      arm_locked(next_due_);
    } else {
      add_run_locked();
    }
    work_arrived_locked();
  }
  after_unlock();
}

}  // namespace atask
