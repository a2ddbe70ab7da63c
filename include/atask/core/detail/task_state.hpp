#pragma once
// Shared state of one task: what the pool queues, what the handle waits on
// and what the supervisor lists. One allocation holds the state, the result
// and the callable. Reference counted by hand because the pool keeps raw
// intrusive links to it.

#include <atask/core/detail/pool_node.hpp>
#include <atask/util/unique_function.hpp>
#include <atask/core/errors.hpp>
#include <atask/core/priority.hpp>
#include <atask/core/task_info.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

namespace atask::detail {

class TaskStateBase;

/// The supervisor's view of its tasks. Called on the thread that changes the
/// task; implementations must not block.
class TaskObserver {
 public:
  /// The task has started (status is started), before user code runs.
  virtual void task_started(TaskStateBase&) noexcept = 0;
  /// The task is about to publish its final status (`final_info.status`);
  /// its waiters are released right after. The observer's own reference may
  /// be dropped here: the caller holds another.
  virtual void task_finished(TaskStateBase&, const TaskInfo& final_info) noexcept = 0;
  /// cancel() moved a queued or delayed task to canceled: take it out of
  /// wherever it waits (pool queue, delay timer).
  virtual void task_cancel_pending(TaskStateBase&) noexcept = 0;

 protected:
  ~TaskObserver() = default;
};

class TaskStateBase : public PoolNode {
 public:
  using clock = std::chrono::steady_clock;

  TaskStateBase(std::uint64_t id, Priority p, TaskKind kind, std::string name) noexcept
      : PoolNode(p), id_(id), kind_(kind), name_(std::move(name)) {}

  // -- reference counting ----------------------------------------------------
  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept final {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // -- identity --------------------------------------------------------------
  std::uint64_t id() const noexcept { return id_; }
  TaskKind kind() const noexcept { return kind_; }
  const std::string& name() const noexcept { return name_; }

  // -- status ----------------------------------------------------------------
  TaskStatus status() const noexcept {
    auto s = status_.load(std::memory_order_acquire);
    return s == finishing ? TaskStatus::started : static_cast<TaskStatus>(s);
  }
  bool done() const noexcept { return is_final(status_.load(std::memory_order_acquire)); }

  void wait() const;
  bool wait_until(clock::time_point deadline) const;

  /// Queued/delayed: the task will never run (true). Started: what
  /// cancel_started() says. Final: nothing happens (false).
  bool cancel() noexcept;

  /// Ask a running task to stop; the default requests its stop_token.
  virtual void request_stop() noexcept { stop_.request_stop(); }
  /// What cancel() does to a started task, and what it returns; the
  /// default requests its stop (true). A process task kills its child and
  /// returns true only if the task will end canceled (false when its
  /// result won the race).
  virtual bool cancel_started() noexcept {
    request_stop();
    return true;
  }
  std::stop_token stop_token() const noexcept { return stop_.get_token(); }

  /// Runs f once the task is final: at once (on this thread) if it already
  /// is, otherwise on the thread that finishes the task.
  void on_done(UniqueFunction f);

  /// Only meaningful once done().
  std::exception_ptr error() const noexcept { return done() ? error_ : nullptr; }
  void rethrow_if_error() const {
    if (error_) std::rethrow_exception(error_);
  }

  TaskInfo info() const;

  /// The raw times (steady_clock ticks since its epoch; 0 = not yet), for
  /// bookkeeping that must not build a TaskInfo. Relaxed loads: the thread
  /// that changed the status, or one synchronised with it, sees its own.
  clock::rep queued_at_rep() const noexcept { return queued_at_.load(std::memory_order_relaxed); }
  clock::rep started_at_rep() const noexcept { return started_at_.load(std::memory_order_relaxed); }
  clock::rep finished_at_rep() const noexcept { return finished_at_.load(std::memory_order_relaxed); }

  // -- transitions (used by pools, supervisor and executors) -----------------
  void set_observer(TaskObserver* o) noexcept { observer_ = o; }
  void mark_delayed() noexcept { status_.store(static_cast<unsigned char>(TaskStatus::delayed)); }
  void mark_queued() noexcept;
  /// delayed -> queued; false when the task was canceled meanwhile.
  bool try_enqueue_after_delay() noexcept;
  /// queued -> started; false when canceled meanwhile (then do nothing).
  bool try_start() noexcept;
  /// The pool drops a queued task it will never run.
  void discard() noexcept final;
  /// Releases waiters with TaskAbandoned (cold shutdown); the task's own
  /// thread may still be inside user code.
  void abandon(std::exception_ptr why) noexcept;
  /// Fails a queued/delayed task without running it (stop, aloop gone).
  bool cancel_pending(std::exception_ptr why) noexcept;

  // Registry links; the supervisor owns them under its own mutex.
  TaskStateBase* reg_prev_ = nullptr;
  TaskStateBase* reg_next_ = nullptr;

 protected:
  ~TaskStateBase() override = default;

  /// Called by executors, after try_start() succeeded.
  void finish_ok() noexcept { finish(TaskStatus::completed, nullptr); }
  void finish_error(std::exception_ptr e) noexcept {
    // Decide before the call: argument order is unspecified, and the by-value
    // parameter may be moved out of `e` before `e` is tested.
    const TaskStatus s = e ? TaskStatus::failed : TaskStatus::completed;
    finish(s, std::move(e));
  }
  void finish_canceled(std::exception_ptr e) noexcept { finish(TaskStatus::canceled, std::move(e)); }
  /// For what a task's code threw: a task that was asked to stop and ends by
  /// a cancellation (atask::TaskCanceled, or an Asio operation aborted by
  /// its cancellation) ends `canceled` with TaskCanceled; anything else
  /// `failed` with the exception itself.
  void finish_caught(std::exception_ptr e) noexcept;

  /// Process tasks: their child's pid and end (TaskInfo::child_pid,
  /// exit_signal, exit_code). Called by info() for process tasks only.
  virtual void add_process_info(TaskInfo&) const noexcept {}

  /// A task canceled before it started frees its callable at once (on the
  /// canceling thread): what it captured may be waiting for exactly that.
  virtual void drop_unstarted() noexcept {}
  /// Asked by cancel_pending() before a queued task is canceled: false when
  /// it has started meanwhile where this thread cannot see it yet (a process
  /// task sent ahead to a child that claimed it first), and is now started;
  /// cancel() then cancels it as a started task.
  virtual bool claim_unstarted() noexcept { return true; }

  // Internal status between a transient one and a final one: the winner of
  // the CAS writes error_ and the times, then publishes the final status.
  // Shown as `started`.
  static constexpr unsigned char finishing = 6;

 private:
  static bool is_final(unsigned char s) noexcept {
    return s == static_cast<unsigned char>(TaskStatus::completed) ||
           s == static_cast<unsigned char>(TaskStatus::failed) ||
           s == static_cast<unsigned char>(TaskStatus::canceled);
  }
  /// CAS from `from` to finishing, then writes e and publishes s.
  bool finish_from(unsigned char from, TaskStatus s, std::exception_ptr e) noexcept;
  void finish(TaskStatus s, std::exception_ptr e) noexcept;
  /// Books (observer), then the final status, then the waiters.
  void publish(TaskStatus s) noexcept;
  void release_waiters() noexcept;
  static clock::rep now_rep() noexcept { return clock::now().time_since_epoch().count(); }
  /// Spins up to 50 us (or to the deadline) for the task to finish.
  bool spin_until_done(clock::time_point deadline) const noexcept;
  /// done() for a waiter that has just set has_waiters_: a seq_cst load, so
  /// that it cannot be ordered before that store (see has_waiters_).
  bool final_seen_by_waiter() const noexcept { return is_final(status_.load(std::memory_order_seq_cst)); }

  std::uint64_t id_;
  TaskKind kind_;
  std::string name_;
  std::atomic<int> refs_{1};
  std::atomic<unsigned char> status_{static_cast<unsigned char>(TaskStatus::queued)};
  std::atomic<clock::rep> queued_at_{0}, started_at_{0}, finished_at_{0};
  std::exception_ptr error_;  // written before the final status is published
  std::stop_source stop_;
  TaskObserver* observer_ = nullptr;

  // Blocking waiters and continuations. `has_waiters_` lets finish() skip the
  // mutex when nobody waits (the common case under load): waiter stores it,
  // then reads the status; finisher stores the status, then reads it; both
  // seq_cst, so at least one of them sees the other.
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  mutable std::atomic<bool> has_waiters_{false};
  std::vector<UniqueFunction> continuations_;
};

/// State plus result storage.
template <class T>
class TaskState : public TaskStateBase {
 public:
  using TaskStateBase::TaskStateBase;
  const T& value() const {
    rethrow_if_error();
    return *value_;
  }

 protected:
  void finish_value(T v) noexcept(std::is_nothrow_move_constructible_v<T>) {
    value_.emplace(std::move(v));
    finish_ok();
  }

 private:
  std::optional<T> value_;
};

template <>
class TaskState<void> : public TaskStateBase {
 public:
  using TaskStateBase::TaskStateBase;
  void value() const { rethrow_if_error(); }

 protected:
  void finish_value() noexcept { finish_ok(); }
};

/// Intrusive owning pointer to a task state.
template <class S>
class Ref {
 public:
  Ref() = default;
  /// Adopts one reference.
  static Ref adopt(S* p) noexcept {
    Ref r;
    r.p_ = p;
    return r;
  }
  Ref(const Ref& o) noexcept : p_(o.p_) {
    if (p_) p_->add_ref();
  }
  Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U*, S*>>>
  Ref(Ref<U> o) noexcept : p_(o.detach()) {}
  Ref& operator=(Ref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~Ref() {
    if (p_) p_->release();
  }
  S* get() const noexcept { return p_; }
  S* operator->() const noexcept { return p_; }
  S& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  S* detach() noexcept { return std::exchange(p_, nullptr); }

 private:
  S* p_ = nullptr;
};

/// Sets the thread's current task for atask::this_task while a thread task runs.
class CurrentTaskScope {
 public:
  explicit CurrentTaskScope(TaskStateBase* t) noexcept;
  ~CurrentTaskScope();
  CurrentTaskScope(const CurrentTaskScope&) = delete;
  CurrentTaskScope& operator=(const CurrentTaskScope&) = delete;

 private:
  TaskStateBase* prev_;
};

}  // namespace atask::detail
