#include "supervisor/task_registry.hpp"

#include "util/platform.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <string>
#include <utility>

namespace atask::detail {

TaskRegistry::TaskRegistry(const SupervisorOptions& opt, std::shared_ptr<spdlog::logger> log, Hooks hooks)
    : opt_(opt), log_(std::move(log)), hooks_(std::move(hooks)) {}

void TaskRegistry::open() {
  std::lock_guard lk(reg_m_);
  open_ = true;
}

void TaskRegistry::close() {
  std::lock_guard lk(reg_m_);
  closed_ = true;
}

bool TaskRegistry::add(TaskStateBase* t) {
  std::lock_guard lk(reg_m_);
  if (!open_ || closed_) return false;
  t->set_observer(this);
  t->add_ref();
  t->reg_next_ = live_head_;
  if (live_head_) live_head_->reg_prev_ = t;
  live_head_ = t;
  ++live_;
  ++submitted_[index(t->priority())][index(t->kind())];
  return true;
}

bool TaskRegistry::empty() const {
  std::lock_guard lk(reg_m_);
  return live_ == 0;
}

std::size_t TaskRegistry::cancel_pending(bool queued_too, const char* why) {
  auto ts = live_tasks([&](auto& t) {
    auto s = t.status();
    return s == TaskStatus::delayed || (queued_too && s == TaskStatus::queued);
  });
  std::size_t n = 0;
  for (auto& t : ts)
    n += t->cancel_pending(std::make_exception_ptr(TaskCanceled(
        "task #" + std::to_string(t->id()) + " was canceled: supervisor '" + opt_.id + "' " + why)));
  return n;
}

std::size_t TaskRegistry::shutdown_canceled() const {
  std::lock_guard lk(reg_m_);
  return shutdown_canceled_;
}

void TaskRegistry::fill(TaskCounters& counters, std::size_t& active) const {
  std::lock_guard lk(reg_m_);
  for (std::size_t p = 0; p < priority_count; ++p)
    for (std::size_t k = 0; k < task_kind_count; ++k) {
      counters.submitted[p] += submitted_[p][k];
      counters.completed[p] += completed_[p][k];
      counters.failed[p] += failed_[p][k];
      counters.canceled[p] += canceled_[p][k];
    }
  active = live_;
}

TaskMetrics TaskRegistry::metrics() const {
  TaskMetrics m;
  ByPriorityKind<TimeHistogram<std::uint64_t>> run_time;
  {
    // Copies only: the vectors are built after the lock, which every
    // submit and finish takes.
    std::lock_guard lk(reg_m_);
    m.submitted = submitted_;
    m.completed = completed_;
    m.failed = failed_;
    m.canceled = canceled_;
    run_time = run_time_;
  }
  // Read after the ended counts: a task's start happens before its end, so
  // `started` is never below the started tasks those counts include.
  for (std::size_t p = 0; p < priority_count; ++p)
    for (std::size_t k = 0; k < task_kind_count; ++k) {
      m.run_time[p][k] = run_time[p][k].snapshot();
      m.queue_wait[p][k] = queue_wait_[p][k].snapshot();
      m.started[p][k] = m.queue_wait[p][k].count;
    }
  return m;
}

std::vector<TaskInfo> TaskRegistry::list(std::optional<TaskStatus> only) const {
  std::vector<TaskInfo> out;
  std::lock_guard lk(reg_m_);
  for (auto* t = live_head_; t; t = t->reg_next_) {
    TaskInfo i = t->info();
    if (!only || i.status == *only) out.push_back(std::move(i));
  }
  for (const auto& i : history_)
    if (!only || i.status == *only) out.push_back(i);
  return out;
}

// -- TaskObserver --------------------------------------------------------------

void TaskRegistry::task_started(TaskStateBase& t) noexcept {
  // The raw times, not info(): that copies the name, and this runs for every task.
  const tick queued = t.queued_at_rep(), started = t.started_at_rep();
  queue_wait_[index(t.priority())][index(t.kind())].observe(queued != 0 ? started - queued : 0);
  if (opt_.timeout_warning.count() == 0 && opt_.timeout_critical.count() == 0) return;
  TaskInfo i = t.info();
  if (!i.queued_at || !i.started_at) return;
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(*i.started_at - *i.queued_at);
  auto call = [&](const std::function<void(const TaskInfo&)>& cb) {
    if (!cb) return;
    try {
      cb(i);
    } catch (...) {
      log_->error("{}: timeout callback threw: {}", opt_.id, describe(std::current_exception()));
    }
  };
  if (opt_.timeout_critical.count() > 0 && waited > opt_.timeout_critical) {
    log_->error("{}: task #{} ({}) waited {} ms before it started (critical: {} ms)", opt_.id, i.id,
                to_string(i.priority), waited.count(), opt_.timeout_critical.count());
    call(opt_.on_timeout_critical);
  } else if (opt_.timeout_warning.count() > 0 && waited > opt_.timeout_warning) {
    log_->warn("{}: task #{} ({}) waited {} ms before it started (warning: {} ms)", opt_.id, i.id,
               to_string(i.priority), waited.count(), opt_.timeout_warning.count());
    call(opt_.on_timeout_warning);
  }
}

void TaskRegistry::task_finished(TaskStateBase& t, const TaskInfo& final_info) noexcept {
  bool now_drained = false;
  TaskInfo i = final_info;
  {
    std::lock_guard lk(reg_m_);
    if (t.reg_prev_)
      t.reg_prev_->reg_next_ = t.reg_next_;
    else
      live_head_ = t.reg_next_;
    if (t.reg_next_) t.reg_next_->reg_prev_ = t.reg_prev_;
    t.reg_prev_ = t.reg_next_ = nullptr;
    --live_;
    const auto p = index(i.priority), k = index(i.kind);
    switch (i.status) {
      case TaskStatus::completed:
        ++completed_[p][k];
        break;
      case TaskStatus::failed:
        ++failed_[p][k];
        break;
      default:
        ++canceled_[p][k];
        if (closed_ && !i.started_at) ++shutdown_canceled_;
    }
    if (i.started_at && i.finished_at) run_time_[p][k].observe((*i.finished_at - *i.started_at).count());
    history_.push_back(std::move(i));
    if (history_.size() > opt_.history_size) history_.pop_front();
    now_drained = live_ == 0 && closed_;
  }
  if (now_drained && hooks_.drained) hooks_.drained();
  t.release();  // the registry's reference; someone else still holds one
}

void TaskRegistry::task_cancel_pending(TaskStateBase& t) noexcept {
  if (hooks_.dequeue) hooks_.dequeue(t);
}

}  // namespace atask::detail
