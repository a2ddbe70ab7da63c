#pragma once
// What the process pool needs from a process task, whatever its result type
// (process.hpp has the typed task). Light on purpose: supervisor.hpp
// includes it; Boost.JSON stays in process.hpp.

#include <atask/core/detail/task_state.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace atask::detail {

class ProcessPool;

/// The child-side call of one function signature: parses the JSON array of
/// arguments, calls `fn` (cast back to its real type) and returns the result
/// serialized as JSON. Runs only in a child process.
using ProcessEntry = std::string (*)(void (*fn)(), std::string_view args);

/// Thrown by a ProcessEntry in the child when the function's result cannot
/// be sent as JSON (a NaN, a string that is not UTF-8): the child replies
/// with what() instead of a result, and the parent fails the task with it.
class UnsendableResult : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ProcessJob {
 public:
  ProcessJob(ProcessEntry e, void (*f)(), std::string a, std::chrono::milliseconds hard,
             std::chrono::milliseconds soft) noexcept
      : entry(e), fn(f), args(std::move(a)), time_limit(hard), soft_time_limit(soft) {}
  ProcessJob(const ProcessJob&) = delete;
  ProcessJob& operator=(const ProcessJob&) = delete;

  virtual TaskStateBase& task() noexcept = 0;
  /// Converts the child's JSON result and completes the task; a result that
  /// does not convert fails it. On the pool's loop thread.
  virtual void deliver(std::string_view json) noexcept = 0;
  /// Ends a started task with e: failed, or canceled when `canceled`.
  virtual void fail(std::exception_ptr e, bool canceled) noexcept = 0;

  const ProcessEntry entry;
  void (*const fn)();
  std::string args;                                             // JSON array; freed once sent or dropped
  const std::chrono::milliseconds time_limit, soft_time_limit;  // 0 = the pool's default
  ProcessPool* pool = nullptr;                                  // set before the task is queued

  // The pool's queue links and bookkeeping, under the pool's mutex.
  ProcessJob* q_prev = nullptr;
  ProcessJob* q_next = nullptr;
  bool q_linked = false;
  bool no_prefetch = false;   // a cancel is deciding its fate: never send it ahead
  std::uint64_t q_seq = 0;    // its place in its queue (FIFO), kept when it goes back to the front
  std::uint64_t held_by = 0;  // the child holding it ahead (the pool's key), 0 = none

  // What the task's info shows (TaskInfo::child_pid, exit_signal,
  // exit_code): written on the pool's loop thread (or under its mutex)
  // before the task starts or ends, read by info() from any thread. Three
  // relaxed stores per task at most: nothing else on the hot path.
  std::atomic<int> child_pid{0};
  std::atomic<int> exit_signal{0};
  std::atomic<int> exit_code{-1};

 protected:
  ~ProcessJob() = default;
};

// Implemented by the pool (src/process/process_pool.cpp).
/// A started task's cancel: its child is killed, the task ends canceled
/// (true) - or false when its reply came first and the task ends with it.
bool process_cancel_running(ProcessPool& pool, ProcessJob& job) noexcept;
/// A started task's stop request: this_task::stop_requested() turns true in its child.
void process_request_stop(ProcessPool& pool, ProcessJob& job) noexcept;
/// A queued task was canceled: take it out of the queue.
void process_remove_queued(ProcessPool& pool, ProcessJob& job) noexcept;
/// A queued task is about to be canceled: false if a child holding it ahead
/// claimed it first (it is started now), true if it will never run.
bool process_claim_unstarted(ProcessPool& pool, ProcessJob& job) noexcept;

}  // namespace atask::detail
