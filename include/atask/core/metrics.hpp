#pragma once
/// @file
/// Task counts and duration histograms by priority and kind: what
/// Supervisor::task_metrics() returns and the HTTP control plane exports.

#include <atask/core/priority.hpp>
#include <atask/core/task_info.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace atask {

/// Task counters by priority since start.
struct TaskCounters {
  std::array<std::uint64_t, priority_count> submitted{}, completed{}, failed{}, canceled{};
};

/// The number of TaskKind values (thread, coroutine, process).
inline constexpr std::size_t task_kind_count = 3;

/// A TaskKind as an array index (see TaskMetrics).
constexpr std::size_t index(TaskKind k) noexcept {
  return static_cast<std::size_t>(k);
}

/// One histogram of durations, in seconds. `counts` has one entry per
/// bucket: counts[i] is the number of observations v with
/// bounds[i-1] < v <= bounds[i]; the last entry (+Inf) those above every
/// bound. Not cumulative: Prometheus' `le` buckets are the running sums.
struct HistogramSnapshot {
  std::vector<double> bounds;
  std::vector<std::uint64_t> counts;  ///< bounds.size() + 1
  double sum = 0;                     ///< seconds
  std::uint64_t count = 0;            ///< the sum of `counts`
};

/// Task counters and timing since the supervisor was created, by
/// [index(priority)][index(kind)], of every task submit() registered (one
/// whose launch fails before that, for a missing aloop say, is not counted).
///  - submitted: registered (queued or delayed);
///  - started: began to run (a task canceled while queued never starts);
///  - completed / failed / canceled: its final status (a started task that
///    ended by its stop is canceled; one abandoned by a cold shutdown failed);
///  - queue_wait: started - queued, observed when the task starts (a delayed
///    task is queued when its delay ends), so its count equals `started`;
///  - run_time: finished - started, observed when a started task ends.
/// submitted, completed, failed, canceled and run_time are read together
/// and agree with each other; started and queue_wait are read apart (they
/// are counted without a lock) and may be a few tasks ahead while tasks start.
struct TaskMetrics {
  using table = std::array<std::array<std::uint64_t, task_kind_count>, priority_count>;
  using histograms = std::array<std::array<HistogramSnapshot, task_kind_count>, priority_count>;
  table submitted{}, started{}, completed{}, failed{}, canceled{};
  histograms queue_wait{}, run_time{};
};

/// The upper bounds, in seconds, of the queue-wait and run-time histogram
/// buckets: 0.0001 ... 60 (then +Inf).
inline constexpr std::array<double, 18> task_time_buckets{
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

}  // namespace atask
