#pragma once
/// @file
/// Aloop: a named Asio io_context running on its own thread, where
/// coroutine tasks and coroutine executors run (atasker's aloops).
///
/// @code
///   atask::Aloop& loop = sv.create_aloop("net");
///   asio::co_spawn(loop.get_executor(), my_coroutine(), asio::detached);
/// @endcode

#include <atask/util/unique_function.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace atask {

namespace detail {
class TaskStateBase;
}

/// One event loop thread.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, except stop(), which must
/// not be called from the loop's own thread (LifecycleError).
class Aloop {
 public:
  using executor_type = boost::asio::io_context::executor_type;

  /// Creates the loop; start() starts its thread.
  explicit Aloop(std::string name);
  /// stop().
  ~Aloop();
  Aloop(const Aloop&) = delete;
  Aloop& operator=(const Aloop&) = delete;

  const std::string& name() const noexcept { return name_; }

  /// Starts the thread (named after the loop).
  /// @throws LifecycleError when started twice or after stop().
  void start();
  /// Stops the loop and joins its thread, then destroys what was still
  /// pending on it: suspended coroutine tasks end canceled. Executors taken
  /// from it must not be used afterwards. A second call is a no-op.
  /// @throws LifecycleError when called from the loop's own thread.
  void stop();

  bool running() const noexcept { return running_.load(std::memory_order_acquire); }
  /// True once stop() was called.
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }
  /// The loop thread's id (default-constructed before start() and after stop()).
  std::thread::id thread_id() const noexcept { return thread_id_.load(std::memory_order_acquire); }
  /// True on the loop's own thread.
  bool on_thread() const noexcept { return std::this_thread::get_id() == thread_id(); }

  /// The loop's executor.
  /// @throws LifecycleError once stopped.
  executor_type get_executor() const;

  /// Starts a coroutine on the loop, bound to the cancellation slot (library
  /// use; users co_spawn on get_executor()).
  /// co_spawn uses the slot's signal until its completion handler runs, after
  /// the coroutine returned; that handler calls, then destroys, `on_done`:
  /// let it own whatever keeps the signal alive.
  /// @throws LifecycleError once stopped.
  void spawn(boost::asio::awaitable<void> coro, boost::asio::cancellation_slot slot,
             detail::UniqueFunction on_done = {});
  /// As above, for the coroutine of a task: it runs on an executor scoped to
  /// `task` (which it keeps alive), so that whenever any part of it runs,
  /// including coroutines it co_spawns on its own executor, atask::this_task
  /// sees that task (its id, its stop request, the consumer's progress).
  void spawn(boost::asio::awaitable<void> coro, boost::asio::cancellation_slot slot,
             detail::UniqueFunction on_done, detail::TaskStateBase& task);

 private:
  std::string name_;
  mutable std::mutex m_;
  std::unique_ptr<boost::asio::io_context> ctx_;
  boost::asio::io_context* raw_ctx_;  // the same context; alive while its thread runs
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<std::thread::id> thread_id_{};
  bool started_ = false;
};

}  // namespace atask
