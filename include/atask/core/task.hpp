#pragma once
/// @file
/// TaskHandle<T>: what submitting a task gives back.
///
/// @code
///   atask::TaskHandle<int> t = sv.submit({}, [] { return 6 * 7; });
///   int v = t.get();                                  // blocks, or rethrows
///   int w = co_await t.async_get(asio::use_awaitable); // from a coroutine
/// @endcode

#include <atask/core/detail/task_state.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace atask {

class Supervisor;

namespace detail {
// Not a conditional_t: void(std::exception_ptr, void) is ill-formed even in
// the branch conditional_t does not pick.
template <class T>
struct async_get_signature {
  using type = void(std::exception_ptr, T);
};
template <>
struct async_get_signature<void> {
  using type = void(std::exception_ptr);
};
}  // namespace detail

/// A shared handle to one submitted task. Copies refer to the same task.
/// A default-constructed handle is empty: every call but valid() throws
/// atask::Error. Destroying the last handle does not cancel the task (use
/// cancel()).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, except the handle's own
/// destruction or assignment (as for any object).
template <class T = void>
class [[nodiscard]] TaskHandle {
 public:
  using value_type = T;
  using clock = std::chrono::steady_clock;

  TaskHandle() = default;
  /// Adopts a state (library use).
  explicit TaskHandle(detail::Ref<detail::TaskState<T>> s) noexcept : state_(std::move(s)) {}

  bool valid() const noexcept { return static_cast<bool>(state_); }

  std::uint64_t id() const { return s("id").id(); }
  const std::string& name() const { return s("name").name(); }
  Priority priority() const { return s("priority").priority(); }
  TaskKind kind() const { return s("kind").kind(); }
  TaskStatus status() const { return s("status").status(); }
  /// A snapshot with the times and, for a failed task, its error message.
  TaskInfo info() const { return s("info").info(); }
  /// True once the status is final (completed, failed or canceled).
  bool done() const { return s("done").done(); }

  /// Blocks until the task is final.
  void wait() const { s("wait").wait(); }
  /// Blocks up to `d`; true if the task is final.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    return s("wait_for").wait_until(clock::now() + std::chrono::ceil<clock::duration>(d));
  }
  bool wait_until(clock::time_point deadline) const { return s("wait_until").wait_until(deadline); }

  /// Waits, then returns the result (a reference valid while a handle lives)
  /// or rethrows what the task threw.
  /// @throws TaskCanceled for a canceled task.
  decltype(auto) get() const {
    auto& st = s("get");
    st.wait();
    return st.value();
  }
  /// get() with a time limit.
  /// @throws TimeoutError when it runs out.
  template <class Rep, class Period>
  decltype(auto) get_for(std::chrono::duration<Rep, Period> d) const {
    auto& st = s("get_for");
    if (!wait_for(d))
      throw TimeoutError("TaskHandle::get_for() - task #" + std::to_string(st.id()) +
                         " did not finish in time");
    return st.value();
  }

  /// The exception the task ended with (nullptr while running or on success).
  std::exception_ptr error() const { return s("error").error(); }

  /// Queued or delayed: the task never runs and ends canceled (true).
  /// Running: its stop is requested (std::stop_token / the coroutine's
  /// cancellation slot) and it ends however its code decides (true); a
  /// running process task's child is killed and the task ends canceled
  /// (true) - unless its result came back first: then it completes (or
  /// fails) with what the child sent and cancel() returns false. So for a
  /// process task, true means exactly that the task ends canceled.
  /// Already final: a no-op (false).
  bool cancel() const { return s("cancel").cancel(); }

  /// Requests the task's stop (std::stop_token / the coroutine's
  /// cancellation slot) without canceling it: a queued task still runs, and
  /// sees the request at once. A no-op once final.
  void request_stop() const {
    auto& st = s("request_stop");
    if (!st.done()) st.request_stop();
  }

  /// Asynchronous get(): completes with (exception_ptr, T) - or
  /// (exception_ptr) for void - on the token's associated executor.
  /// With asio::use_awaitable, `co_await h.async_get(asio::use_awaitable)`
  /// returns the value or throws, without blocking a thread.
  template <class CompletionToken>
  auto async_get(CompletionToken&& token) const {
    using Sig = typename detail::async_get_signature<T>::type;
    auto state = state_;
    if (!state) throw Error("TaskHandle::async_get() - empty handle");
    return boost::asio::async_initiate<CompletionToken, Sig>(
        [state](auto handler) {
          auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
          state->on_done([state, handler = std::move(handler), work = std::move(work)]() mutable {
            auto ex = work.get_executor();
            boost::asio::post(ex, [state, handler = std::move(handler)]() mutable {
              std::exception_ptr e = state->error();
              if constexpr (std::is_void_v<T>) {
                std::move(handler)(e);
              } else {
                static_assert(std::is_default_constructible_v<T>,
                              "async_get() needs a default-constructible result type "
                              "(it is passed alongside the exception on failure)");
                if (e)
                  std::move(handler)(e, T{});
                else
                  std::move(handler)(e, state->value());
              }
            });
          });
        },
        token);
  }

  /// The shared state (library use).
  detail::TaskState<T>* state_ptr() const noexcept { return state_.get(); }

  friend bool operator==(const TaskHandle& a, const TaskHandle& b) noexcept {
    return a.state_.get() == b.state_.get();
  }

 private:
  detail::TaskState<T>& s(const char* call) const {
    if (!state_) throw Error(std::string("TaskHandle::") + call + "() - empty handle");
    return *state_;
  }
  detail::Ref<detail::TaskState<T>> state_;
};

/// Waits for every handle, up to `timeout` in all, and returns the results in
/// the handles' order, or rethrows the first failure (in order).
/// @throws TimeoutError naming how many did not finish.
template <class T, class Rep, class Period>
auto wait_completed(const std::vector<TaskHandle<T>>& tasks, std::chrono::duration<Rep, Period> timeout) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::ceil<std::chrono::steady_clock::duration>(timeout);
  std::size_t late = 0;
  for (const auto& t : tasks)
    if (!t.wait_until(deadline)) ++late;
  if (late != 0)
    throw TimeoutError("wait_completed() - " + std::to_string(late) + " of " + std::to_string(tasks.size()) +
                       " tasks did not finish in time");
  if constexpr (std::is_void_v<T>) {
    for (const auto& t : tasks) t.get();
  } else {
    std::vector<T> out;
    out.reserve(tasks.size());
    for (const auto& t : tasks) out.push_back(t.get());
    return out;
  }
}

/// wait_completed() for one task: its result (or its failure, rethrown), or
/// TimeoutError if it does not finish within the timeout.
template <class T, class Rep, class Period>
T wait_completed(const TaskHandle<T>& task, std::chrono::duration<Rep, Period> timeout) {
  if (!task.wait_for(timeout)) throw TimeoutError("wait_completed() - the task did not finish in time");
  return task.get();
}

/// About the task running on the calling thread - a thread task, a
/// coroutine task while its aloop runs it, or, inside a child of the process
/// pool, the process task the child runs.
namespace this_task {
/// True when the current task was asked to stop (cancel() or a soft
/// shutdown); in a child process also once the task's soft time limit is
/// over. False outside a task.
bool stop_requested() noexcept;
/// The current thread or coroutine task's stop token (an empty token outside
/// one, and in a child process: use stop_requested() there).
std::stop_token stop_token() noexcept;
/// The current task's id, 0 outside one.
std::uint64_t id() noexcept;
}  // namespace this_task

}  // namespace atask
