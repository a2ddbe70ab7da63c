#pragma once
// The supervisor's books of its tasks: every active task (each holds a
// reference), a bounded history of finished ones, counters and duration
// histograms by priority and kind, and the queue-time warnings. It is the
// TaskObserver of every task the supervisor registers.
//
// Lock: reg_m, its own. It calls nothing that takes another supervisor lock
// while holding it, and runs no user code under it (the timeout callbacks
// run without it). Lock order: see the top of src/supervisor/supervisor.cpp.

#include <atask/supervisor/supervisor.hpp>

#include "supervisor/time_histogram.hpp"

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace atask::detail {

class TaskRegistry final : public TaskObserver {
 public:
  /// What the registry cannot do itself.
  struct Hooks {
    /// A queued or delayed task was canceled: take it out of wherever it
    /// waits (pool queue, delay timer). Must not block.
    std::function<void(TaskStateBase&)> dequeue;
    /// The last active task of a closed registry has ended. Called without
    /// reg_m, on the thread that ended it; must not block.
    std::function<void()> drained;
  };

  /// Reads the id, history_size and queue-time options (copied).
  TaskRegistry(const SupervisorOptions& opt, std::shared_ptr<spdlog::logger> log, Hooks hooks);
  TaskRegistry(const TaskRegistry&) = delete;
  TaskRegistry& operator=(const TaskRegistry&) = delete;

  /// From open() until close() the registry takes tasks. close() is the line
  /// past which no task registers: what is active then is all a shutdown
  /// has to deal with. Each happens once.
  void open();
  void close();

  /// Takes a reference to `t`, becomes its observer and counts it as
  /// submitted; false (and nothing done) when the registry is not open.
  [[nodiscard]] bool add(TaskStateBase* t);

  /// References to the active tasks that `pred` selects.
  template <class Fn>
  std::vector<Ref<TaskStateBase>> live_tasks(Fn&& pred) {
    std::vector<Ref<TaskStateBase>> out;
    std::lock_guard lk(reg_m_);
    for (auto* t = live_head_; t; t = t->reg_next_)
      if (pred(*t)) {
        t->add_ref();
        out.push_back(Ref<TaskStateBase>::adopt(t));
      }
    return out;
  }

  /// No task is active.
  bool empty() const;

  /// Cancels the delayed tasks, and the queued ones too with `queued_too`,
  /// with TaskCanceled("... supervisor '<id>' <why>"); returns how many.
  std::size_t cancel_pending(bool queued_too, const char* why);

  /// Tasks canceled before they started once the registry was closed.
  std::size_t shutdown_canceled() const;

  /// Counters by priority and the number of active tasks.
  void fill(TaskCounters& counters, std::size_t& active) const;
  TaskMetrics metrics() const;
  /// Active tasks, then the history oldest first; optionally one status only.
  std::vector<TaskInfo> list(std::optional<TaskStatus> only) const;

  // -- TaskObserver ----------------------------------------------------------
  void task_started(TaskStateBase& t) noexcept override;
  void task_finished(TaskStateBase& t, const TaskInfo& final_info) noexcept override;
  void task_cancel_pending(TaskStateBase& t) noexcept override;

 private:
  const SupervisorOptions opt_;
  const std::shared_ptr<spdlog::logger> log_;
  const Hooks hooks_;

  mutable std::mutex reg_m_;
  bool open_ = false, closed_ = false;  // under reg_m_
  TaskStateBase* live_head_ = nullptr;
  std::size_t live_ = 0;
  std::deque<TaskInfo> history_;
  // Task metrics (Supervisor::task_metrics). Under reg_m: what registering
  // and finishing a task count, which take reg_m anyway. Without a lock:
  // what starting one counts (task_started takes no lock) - the count of
  // queue_wait is the number of tasks started.
  TaskMetrics::table submitted_{}, completed_{}, failed_{}, canceled_{};
  ByPriorityKind<TimeHistogram<std::uint64_t>> run_time_{};
  ByPriorityKind<StartHistogram> queue_wait_{};
  std::size_t shutdown_canceled_ = 0;
};

}  // namespace atask::detail
