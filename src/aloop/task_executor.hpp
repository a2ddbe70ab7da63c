#pragma once
// TaskExecutor: an aloop's executor scoped to one coroutine task.
//
// A pool thread knows its task from the thread itself (CurrentTaskScope
// around run()). A coroutine has no thread of its own: it is resumed by
// handlers run on the aloop, between which other coroutines run. Every
// resumption of a coroutine goes through the executor it was co_spawned on,
// so wrapping that executor is where the task can be made current again:
// each function it executes runs inside a CurrentTaskScope for the task.
// Coroutines the task co_spawns on its own executor, and the timers and
// sockets it makes from it, carry the scope along.
//
// The executor holds a reference to the task: a copy kept by a timer or a
// detached coroutine may outlive the task's frame, and this_task must not
// read a task that is gone. The task's own frame does not keep itself alive
// through it beyond the frame's life (the frame is destroyed when the
// coroutine ends, or with its aloop).

#include <atask/core/detail/task_state.hpp>

#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include <type_traits>
#include <utility>

namespace atask::detail {

template <class Inner>
class TaskExecutor {
 public:
  TaskExecutor(Inner inner, Ref<TaskStateBase> task) noexcept
      : inner_(std::move(inner)), task_(std::move(task)) {}

  template <class F>
  void execute(F f) const {
    inner_.execute([task = task_, f = std::move(f)]() mutable {
      CurrentTaskScope scope(task.get());
      std::move(f)();
    });
  }

  template <class P>
  requires boost::asio::can_query<const Inner&, const P&>::value decltype(auto) query(const P& p) const
      noexcept(boost::asio::is_nothrow_query<const Inner&, const P&>::value) {
    return boost::asio::query(inner_, p);
  }

  template <class P>
  requires boost::asio::can_require<const Inner&, const P&>::value auto require(const P& p) const {
    using R = std::decay_t<decltype(boost::asio::require(inner_, p))>;
    return TaskExecutor<R>(boost::asio::require(inner_, p), task_);
  }

  template <class P>
  requires boost::asio::can_prefer<const Inner&, const P&>::value auto prefer(const P& p) const {
    using R = std::decay_t<decltype(boost::asio::prefer(inner_, p))>;
    return TaskExecutor<R>(boost::asio::prefer(inner_, p), task_);
  }

  friend bool operator==(const TaskExecutor& a, const TaskExecutor& b) noexcept {
    return a.inner_ == b.inner_ && a.task_.get() == b.task_.get();
  }
  friend bool operator!=(const TaskExecutor& a, const TaskExecutor& b) noexcept { return !(a == b); }

 private:
  template <class>
  friend class TaskExecutor;
  Inner inner_;
  Ref<TaskStateBase> task_;
};

}  // namespace atask::detail
