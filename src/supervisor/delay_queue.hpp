#pragma once
// Timers for delayed tasks (TaskOptions::delay). A delayed task waits on an
// Asio timer on the supervisor's loop and takes its queue slot only when the
// timer fires: it holds no pool slot while it waits.
//
// No lock: the timers live on the loop thread; other threads reach them
// through asio::post. Lock order: see the top of src/supervisor/supervisor.cpp.

#include <atask/core/detail/task_state.hpp>
#include <atask/util/unique_function.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <unordered_map>

namespace atask::detail {

class DelayQueue {
 public:
  explicit DelayQueue(boost::asio::io_context& loop) noexcept : loop_(loop) {}
  DelayQueue(const DelayQueue&) = delete;
  DelayQueue& operator=(const DelayQueue&) = delete;

  /// Any thread. After `delay`, moves `t` from delayed to queued and calls
  /// `enqueue` on the loop; nothing when `t` was canceled meanwhile. What
  /// `enqueue` throws (a stopping pool cancels the task and throws) is
  /// dropped.
  void add(Ref<TaskStateBase> t, std::chrono::milliseconds delay, UniqueFunction enqueue);

  /// Any thread: `t` was canceled while it may still wait here; its timer
  /// goes (on the loop).
  void cancel(TaskStateBase& t) noexcept;

  /// The loop thread, as the loop ends: every timer goes.
  void clear() noexcept { timers_.clear(); }

 private:
  boost::asio::io_context& loop_;
  std::unordered_map<std::uint64_t, std::unique_ptr<boost::asio::steady_timer>> timers_;  // loop thread
  std::atomic<int> pending_{0};
};

}  // namespace atask::detail
