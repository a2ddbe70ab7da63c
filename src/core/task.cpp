#include <atask/core/task.hpp>

#include "core/child_context.hpp"
#include "util/platform.hpp"

#include <boost/asio/error.hpp>

#include <algorithm>
#include <boost/system/system_error.hpp>

namespace atask {

namespace {
thread_local detail::TaskStateBase* tls_current = nullptr;

constexpr auto u8(TaskStatus s) {
  return static_cast<unsigned char>(s);
}

std::optional<TaskInfo::time_point> tp(std::chrono::steady_clock::rep r) {
  if (r == 0) return std::nullopt;
  return TaskInfo::time_point(std::chrono::steady_clock::duration(r));
}
}  // namespace

namespace this_task {
bool stop_requested() noexcept {
  if (tls_current) return tls_current->stop_token().stop_requested();
  return detail::child::stop_requested();  // false outside a child process
}
std::stop_token stop_token() noexcept {
  return tls_current ? tls_current->stop_token() : std::stop_token{};
}
std::uint64_t id() noexcept {
  return tls_current ? tls_current->id() : detail::child::task_id.load(std::memory_order_relaxed);
}
}  // namespace this_task

namespace detail {

CurrentTaskScope::CurrentTaskScope(TaskStateBase* t) noexcept : prev_(tls_current) {
  tls_current = t;
}
CurrentTaskScope::~CurrentTaskScope() {
  tls_current = prev_;
}

// A task that finishes within a few microseconds (a process task's round
// trip, a short pool task) is waited for without sleeping: waking a thread
// that slept costs more than the wait itself on a VM whose idle vCPUs halt.
// Bounded, so a long wait costs this once.
bool TaskStateBase::spin_until_done(clock::time_point deadline) const noexcept {
  const auto until = std::min(deadline, clock::now() + std::chrono::microseconds(50));
  for (int i = 0;; ++i) {
    if (done()) return true;
    detail::cpu_relax();
    if ((i & 63) == 63 && clock::now() >= until) return done();
  }
}

void TaskStateBase::wait() const {
  if (done() || spin_until_done(clock::time_point::max())) return;
  std::unique_lock lk(m_);
  has_waiters_.store(true);
  cv_.wait(lk, [&] { return final_seen_by_waiter(); });
}

bool TaskStateBase::wait_until(clock::time_point deadline) const {
  if (done() || spin_until_done(deadline)) return true;
  std::unique_lock lk(m_);
  has_waiters_.store(true);
  return cv_.wait_until(lk, deadline, [&] { return final_seen_by_waiter(); });
}

void TaskStateBase::on_done(UniqueFunction f) {
  {
    std::lock_guard lk(m_);
    // The flag before the status (see has_waiters_): read the other way
    // round, a finisher that publishes in between sees no waiter, skips the
    // lock, and this continuation would never run.
    has_waiters_.store(true);
    if (!final_seen_by_waiter()) {
      continuations_.push_back(std::move(f));
      return;
    }
  }
  f();
}

void TaskStateBase::mark_queued() noexcept {
  queued_at_.store(now_rep(), std::memory_order_relaxed);
  status_.store(u8(TaskStatus::queued));
}

bool TaskStateBase::try_enqueue_after_delay() noexcept {
  unsigned char from = u8(TaskStatus::delayed);
  queued_at_.store(now_rep(), std::memory_order_relaxed);
  return status_.compare_exchange_strong(from, u8(TaskStatus::queued));
}

bool TaskStateBase::try_start() noexcept {
  unsigned char from = u8(TaskStatus::queued);
  if (!status_.compare_exchange_strong(from, u8(TaskStatus::started))) return false;
  started_at_.store(now_rep(), std::memory_order_relaxed);
  if (observer_) observer_->task_started(*this);
  return true;
}

bool TaskStateBase::cancel() noexcept {
  unsigned char s = status_.load();
  for (;;) {
    if (s == u8(TaskStatus::queued) || s == u8(TaskStatus::delayed)) {
      if (cancel_pending(std::make_exception_ptr(
              TaskCanceled("task #" + std::to_string(id_) + " was canceled before it started"))))
        return true;
      s = status_.load();
      continue;
    }
    if (s == u8(TaskStatus::started) || s == finishing) {
      const bool will = cancel_started();
      return s == u8(TaskStatus::started) && will;
    }
    return false;  // final: a documented no-op
  }
}

bool TaskStateBase::cancel_pending(std::exception_ptr why) noexcept {
  if (status_.load() == u8(TaskStatus::queued) && !claim_unstarted()) return false;
  for (unsigned char from : {u8(TaskStatus::queued), u8(TaskStatus::delayed)}) {
    unsigned char expected = from;
    if (status_.compare_exchange_strong(expected, finishing)) {
      if (observer_) observer_->task_cancel_pending(*this);
      drop_unstarted();  // no executor touches the callable: it never started
      error_ = std::move(why);
      finished_at_.store(now_rep(), std::memory_order_relaxed);
      publish(TaskStatus::canceled);
      return true;
    }
  }
  return false;
}

void TaskStateBase::discard() noexcept {
  cancel_pending(std::make_exception_ptr(
      TaskCanceled("task #" + std::to_string(id_) + " was canceled: its pool stopped before it started")));
}

void TaskStateBase::abandon(std::exception_ptr why) noexcept {
  if (finish_from(u8(TaskStatus::started), TaskStatus::failed, why)) return;
  if (cancel_pending(std::make_exception_ptr(
          TaskCanceled("task #" + std::to_string(id_) + " was canceled by a cold shutdown"))))
    return;
  // Started meanwhile (a process task its child claimed): abandoned as a started one.
  finish_from(u8(TaskStatus::started), TaskStatus::failed, std::move(why));
}

void TaskStateBase::finish_caught(std::exception_ptr e) noexcept {
  if (stop_token().stop_requested()) {
    try {
      std::rethrow_exception(e);
    } catch (const TaskCanceled&) {
      return finish_canceled(std::move(e));
    } catch (const boost::system::system_error& se) {
      if (se.code() == boost::asio::error::operation_aborted)
        return finish_canceled(std::make_exception_ptr(TaskCanceled(
            "task #" + std::to_string(id_) + " was canceled while running (" + se.what() + ")")));
    } catch (...) {
    }
  }
  finish_error(std::move(e));
}

void TaskStateBase::finish(TaskStatus s, std::exception_ptr e) noexcept {
  finish_from(u8(TaskStatus::started), s, std::move(e));
}

bool TaskStateBase::finish_from(unsigned char from, TaskStatus s, std::exception_ptr e) noexcept {
  if (!status_.compare_exchange_strong(from, finishing)) return false;  // abandoned meanwhile
  error_ = std::move(e);
  finished_at_.store(now_rep(), std::memory_order_relaxed);
  publish(s);
  return true;
}

void TaskStateBase::publish(TaskStatus s) noexcept {
  // The supervisor's books first: a waiter that finds the final status
  // returns without waiting, and info()/tasks() must already agree with it.
  if (observer_) {
    TaskInfo i = info();
    i.status = s;
    if (error_) i.error = describe(error_);  // this thread wrote it; nobody reads it before the store below
    observer_->task_finished(*this, i);
  }
  status_.store(u8(s));
  release_waiters();
}

void TaskStateBase::release_waiters() noexcept {
  // seq_cst store of the status above, seq_cst load here: see has_waiters_.
  if (has_waiters_.load()) {
    std::vector<UniqueFunction> cont;
    {
      std::lock_guard lk(m_);
      cont.swap(continuations_);
    }
    cv_.notify_all();
    for (auto& f : cont) {
      try {
        f();
      } catch (...) {  // a continuation must not take the finishing thread down
      }
    }
  }
}

TaskInfo TaskStateBase::info() const {
  TaskInfo i;
  i.id = id_;
  i.name = name_;
  i.priority = priority();
  i.kind = kind_;
  i.status = status();
  i.queued_at = tp(queued_at_.load(std::memory_order_relaxed));
  i.started_at = tp(started_at_.load(std::memory_order_relaxed));
  i.finished_at = tp(finished_at_.load(std::memory_order_relaxed));
  if (done() && error_) i.error = describe(error_);
  if (kind_ == TaskKind::process) add_process_info(i);
  return i;
}

}  // namespace detail
}  // namespace atask
