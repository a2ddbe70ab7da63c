#pragma once
// Where the distributed mode keeps things in Redis (docs/distributed.md has
// the whole layout), and the Functions library that changes them.

#include <atask/core/priority.hpp>
#include <atask/util/enum_names.hpp>

#include <string>
#include <string_view>

namespace atask::distributed::detail {

inline constexpr std::string_view group = "w";
inline constexpr std::string_view workers_key = "atask:workers";
inline constexpr std::string_view reap_lock_key = "atask:reaper";

inline std::string task_key(std::string_view id) {
  return "atask:t:" + std::string(id);
}
/// One stream per queue and priority; the braces keep a queue's keys in one
/// cluster slot should that ever matter.
inline std::string stream_key(std::string_view queue, Priority p) {
  return "atask:{" + std::string(queue) + "}:" + std::string(to_string(p));
}
inline std::string dead_key(std::string_view queue) {
  return "atask:{" + std::string(queue) + "}:dead";
}
/// Tasks waiting for their time (countdown, eta, a retry's back-off): a
/// sorted set of task ids by due time (server ms).
inline std::string delayed_key(std::string_view queue) {
  return "atask:{" + std::string(queue) + "}:delayed";
}
/// The ids of the delayed set that wait for a retry after a failed run (a
/// subset, by due time): its size is QueueStats::retrying.
inline std::string retrying_key(std::string_view queue) {
  return "atask:{" + std::string(queue) + "}:retrying";
}
/// Published to when a task is delayed: the queue's workers re-arm their
/// promotion timer.
inline std::string due_channel(std::string_view queue) {
  return "atask:{" + std::string(queue) + "}:due";
}
/// An idempotency key (SendOptions::idempotency_key) -> the task id.
inline std::string idem_key(std::string_view key) {
  return "atask:idem:" + std::string(key);
}
inline std::string worker_key(std::string_view consumer) {
  return "atask:w:" + std::string(consumer);
}
/// A worker's inbox: the tasks handed to it, started, while it waited idle
/// (a stream read in the group "w"; lua/40_handoff.lua).
inline std::string inbox_key(std::string_view consumer) {
  return "atask:in:" + std::string(consumer);
}
/// The workers that wait idle on a queue, by when that lapses (server ms).
inline std::string idle_key(std::string_view queue) {
  return "atask:{" + std::string(queue) + "}:idle";
}
inline std::string cancel_channel(std::string_view consumer) {
  return "atask:cancel:" + std::string(consumer);
}

/// Queue names go into keys: letters, digits and _ . - : @ / only.
/// @throws OptionsError naming `where`.
void check_queue_name(std::string_view where, std::string_view q);

/// The Functions library (src/distributed/lua/*.lua, in order), for FUNCTION LOAD.
std::string_view functions_source() noexcept;

/// A random id: 32 hex digits (128 bits from the system's random source).
std::string random_id();

}  // namespace atask::distributed::detail
