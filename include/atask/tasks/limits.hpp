#pragma once
/// @file
/// Limits: how fast and how many at once a named task (or a queue) may
/// start across a whole cluster. Set them per task in the registry
/// (NamedTaskOptions::limits) or per queue on a worker
/// (distributed::ConsumerOptions::queue_limits); the distributed mode
/// enforces them in Redis, atomically, for every worker together.
///
/// @code
///   tasks.add("geocode", geocode, {.limits = {.max_starts = 50, .per = 1s}});  // an API's quota
///   tasks.add("render", render, {.limits = {.max_running = 4}});               // 4 licences
/// @endcode
///
/// A task over a limit is not dropped and not retried in a loop: over a
/// rate it gets the next free start time and waits for it in the delayed
/// set; over a concurrency limit it waits in line until a running one ends.

#include <chrono>

namespace atask {

struct TaskLimits {
  /// At most this many starts per `per`, spaced evenly (one every per /
  /// max_starts: no burst); 0: no rate limit.
  unsigned max_starts = 0;
  std::chrono::milliseconds per{1'000};
  /// At most this many running at once across the cluster; 0: no limit.
  unsigned max_running = 0;

  bool any() const noexcept { return max_starts != 0 || max_running != 0; }
  /// @throws OptionsError for a non-positive `per` with max_starts set.
  void check(const char* where) const;
};

}  // namespace atask
