#pragma once
// The two executors behind TaskHandle: a thread task (runs on a pool thread)
// and a coroutine task (runs on an aloop).

#include <atask/core/detail/task_state.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/io_context.hpp>

#include <functional>
#include <optional>
#include <stop_token>
#include <type_traits>

namespace atask::detail {

template <class T>
struct is_awaitable : std::false_type {};
template <class T, class E>
struct is_awaitable<boost::asio::awaitable<T, E>> : std::true_type {
  using value_type = T;
};

/// Runs `fn` (nullary, or taking a std::stop_token) on a pool thread.
template <class T, class F>
class ThreadTask final : public TaskState<T> {
 public:
  ThreadTask(std::uint64_t id, Priority p, std::string name, F fn)
      : TaskState<T>(id, p, TaskKind::thread, std::move(name)), fn_(std::move(fn)) {}

  void run() override {
    if (!this->try_start()) return;  // canceled while queued
    CurrentTaskScope scope(this);
    try {
      if constexpr (std::is_void_v<T>) {
        invoke();
        fn_.reset();  // free captures now, not when the last handle goes
        this->finish_value();
      } else {
        T v = invoke();
        fn_.reset();
        this->finish_value(std::move(v));
      }
    } catch (...) {
      fn_.reset();
      this->finish_caught(std::current_exception());
    }
  }

 private:
  void drop_unstarted() noexcept override { fn_.reset(); }
  decltype(auto) invoke() {
    if constexpr (std::is_invocable_v<F&, std::stop_token>)
      return (*fn_)(this->stop_token());
    else
      return (*fn_)();
  }
  std::optional<F> fn_;
};

/// Runs the awaitable that `fn` returns on an aloop. Cancel while running
/// emits a terminal cancellation on the coroutine's slot (on the loop thread).
template <class T, class F>
class CoroTask final : public TaskState<T> {
 public:
  CoroTask(std::uint64_t id, Priority p, std::string name, F fn)
      : TaskState<T>(id, p, TaskKind::coroutine, std::move(name)), fn_(std::move(fn)) {}

  void run() override {}  // never queued on a pool

  /// The coroutine the aloop runs. Holds a reference for its whole life.
  static boost::asio::awaitable<void> body(Ref<CoroTask> self) {
    // If the loop is destroyed with this frame suspended, end the task.
    struct Guard {
      CoroTask* t;
      ~Guard() {
        if (!t) return;
        t->fn_.reset();  // the frame is going away: nothing runs the callable now
        t->finish_canceled(std::make_exception_ptr(
            TaskCanceled("task #" + std::to_string(t->id()) + " - its aloop stopped before it finished")));
      }
    } guard{self.get()};
    if (!self->try_start()) {
      guard.t = nullptr;
      co_return;
    }
    try {
      if constexpr (std::is_void_v<T>) {
        co_await self->invoke();
        guard.t = nullptr;
        self->fn_.reset();
        self->finish_value();
      } else {
        T v = co_await self->invoke();
        guard.t = nullptr;
        self->fn_.reset();
        self->finish_value(std::move(v));
      }
    } catch (...) {
      guard.t = nullptr;
      self->fn_.reset();
      self->finish_caught(std::current_exception());
    }
  }

  boost::asio::cancellation_slot slot() noexcept { return signal_.slot(); }
  void set_executor(boost::asio::io_context::executor_type ex) noexcept { ex_.emplace(ex); }

  void drop_unstarted() noexcept override { fn_.reset(); }

  void request_stop() noexcept override {
    TaskStateBase::request_stop();
    if (!ex_) return;
    try {
      this->add_ref();
      boost::asio::post(*ex_, [self = Ref<CoroTask>::adopt(this)] {
        self->signal_.emit(boost::asio::cancellation_type::terminal);
      });
    } catch (...) {  // the loop is gone: nothing left to cancel
    }
  }

 private:
  auto invoke() {
    if constexpr (std::is_invocable_v<F&, std::stop_token>)
      return (*fn_)(this->stop_token());
    else
      return (*fn_)();
  }
  std::optional<F> fn_;
  boost::asio::cancellation_signal signal_;
  std::optional<boost::asio::io_context::executor_type> ex_;
};

/// The result of calling a bound task callable.
template <class B, bool = std::is_invocable_v<B&, std::stop_token>>
struct bound_result {
  using type = std::remove_cvref_t<std::invoke_result_t<B&, std::stop_token>>;
};
template <class B>
struct bound_result<B, false> {
  using type = std::remove_cvref_t<std::invoke_result_t<B&>>;
};

/// Binds a callable and its arguments (decay-copied, as std::thread does)
/// into the nullary or stop_token-taking callable the tasks above run.
template <class F, class... Args>
auto bind_task(F&& f, Args&&... args) {
  if constexpr (std::is_invocable_v<std::decay_t<F>&, std::stop_token, std::decay_t<Args>...>) {
    return [f = std::forward<F>(f),
            ... a = std::forward<Args>(args)](std::stop_token st) mutable -> decltype(auto) {
      return std::invoke(f, std::move(st), std::move(a)...);  // a task runs once
    };
  } else {
    static_assert(std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>...>,
                  "atask: the task callable cannot be called with these arguments");
    return [f = std::forward<F>(f), ... a = std::forward<Args>(args)]() mutable -> decltype(auto) {
      return std::invoke(f, std::move(a)...);
    };
  }
}

}  // namespace atask::detail
