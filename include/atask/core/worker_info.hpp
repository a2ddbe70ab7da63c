#pragma once
/// @file
/// WorkerInfo: a snapshot of one worker, as Supervisor::workers() and
/// Worker::info() report it.

#include <atask/core/priority.hpp>
#include <atask/util/enum_names.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace atask {

/// A worker's lifecycle: stopped -> active -> stopping -> stopped.
/// Named "stopped", "active", "stopping" by to_string() / from_string()
/// (enum_names.hpp).
enum class WorkerState : unsigned char { stopped, active, stopping };
BOOST_DESCRIBE_ENUM(WorkerState, stopped, active, stopping)

/// What a worker's work comes from: run again and again (background), on a
/// trigger (event), on a schedule (interval), or per queued item (queue).
/// Coroutine forms keep their kind (an AsyncWorker is a background worker)
/// and set WorkerInfo::coroutine. Named by to_string() / from_string().
enum class WorkerKind : unsigned char { background, event, interval, queue };
BOOST_DESCRIBE_ENUM(WorkerKind, background, event, interval, queue)

/// A snapshot of one worker.
struct WorkerInfo {
  std::string name;
  WorkerKind kind = WorkerKind::background;  ///< Worker::kind(); see `coroutine`
  WorkerState state = WorkerState::stopped;
  Priority priority = Priority::normal;
  bool coroutine = false;    ///< runs its executor on an aloop
  std::uint64_t runs = 0;    ///< executor calls that returned (or threw)
  std::uint64_t errors = 0;  ///< executor calls that threw
  std::optional<std::chrono::system_clock::time_point> last_run{};  ///< when the last call started
  /// What the executor's last error said (as WorkerError::message and the
  /// log have it); empty until a call threw. A call ended by the worker's
  /// stop is not an error (see `errors`).
  std::string last_error{};
  std::optional<std::chrono::system_clock::time_point> last_error_at{};  ///< when that call ended
  std::size_t queue_length = 0;                                          ///< queue workers: items waiting
  std::size_t pending_runs = 0;     ///< event/interval workers: runs asked for and not yet started
  std::uint64_t skipped_ticks = 0;  ///< interval workers: ticks that passed during a run (coalesced)
  /// Event and interval workers: runs asked for by trigger() (which returned
  /// true) that a stop or restart dropped before they began. Triggers that
  /// coalesced into one pending run count once.
  std::uint64_t triggers_dropped = 0;
  bool can_trigger = false;   ///< event and interval workers (atask::trigger(Worker&))
  bool accepts_json = false;  ///< queue workers whose items convert from JSON (atask::try_put_json)
};

}  // namespace atask
