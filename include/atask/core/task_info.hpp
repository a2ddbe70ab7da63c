#pragma once
/// @file
/// What a task is and where it is in its life: TaskStatus, TaskKind and
/// TaskInfo, the snapshot Supervisor::tasks() lists.

#include <atask/core/priority.hpp>
#include <atask/util/enum_names.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace atask {

/// Where a task is in its life. queued/delayed/started are transient;
/// completed/failed/canceled are final. Named by to_string() / from_string()
/// (enum_names.hpp): "queued", "delayed", ..., as the enumerators.
enum class TaskStatus : unsigned char { queued, delayed, started, completed, failed, canceled };
BOOST_DESCRIBE_ENUM(TaskStatus, queued, delayed, started, completed, failed, canceled)

/// What runs a task: a priority-pool thread, a coroutine on an aloop, or a
/// forked child process. Named "thread", "coroutine", "process" by
/// to_string() / from_string() (enum_names.hpp).
enum class TaskKind : unsigned char { thread, coroutine, process };
BOOST_DESCRIBE_ENUM(TaskKind, thread, coroutine, process)

/// A snapshot of one task, as the supervisor lists it.
struct TaskInfo {
  using time_point = std::chrono::steady_clock::time_point;
  std::uint64_t id = 0;
  std::string name;
  Priority priority = Priority::normal;
  TaskKind kind = TaskKind::thread;
  TaskStatus status = TaskStatus::queued;
  std::optional<time_point> queued_at;  ///< when it entered the queue (after any delay)
  std::optional<time_point> started_at;
  std::optional<time_point> finished_at;
  std::string error;  ///< what() of the failure or cancellation, empty otherwise
  /// Process tasks: the pid of the child process that ran it; 0 until a
  /// child starts it, and for thread and coroutine tasks.
  int child_pid = 0;
  /// Process tasks whose child died while it ran them: the signal that ended
  /// the child (SIGKILL when the pool killed it: hard time limit, cancel, a
  /// malformed reply); 0 otherwise.
  int exit_signal = 0;
  /// Process tasks whose child exited by itself before it returned a result:
  /// its exit code; -1 otherwise.
  int exit_code = -1;
};

}  // namespace atask
