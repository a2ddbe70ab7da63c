#pragma once
/// @file
/// The process pool's options and counters. The pool itself lives inside the
/// supervisor; process tasks are described in atask/process/process.hpp.
///
/// @code
///   atask::Supervisor sv({.id = "svc", .processes = {.pool_size = 4, .reserve_high = 1,
///                                                    .max_tasks_per_child = 1000}});
/// @endcode

#include <atask/core/priority.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace atask {

/// Sizes and defaults of the process pool (SupervisorOptions::processes).
/// Admission: the rule stated at atask::Priority, with children for threads.
struct ProcessPoolOptions {
  /// Children kept for low-priority work; 0 = no process pool (no fork
  /// server is started and process tasks are refused).
  int pool_size = 0;
  int reserve_normal = 0;
  int reserve_high = 0;
  /// A child exits after this many tasks and a fresh one replaces it
  /// (0 = never): bounds what a leaking task library can accumulate.
  std::size_t max_tasks_per_child = 0;
  /// Default hard limit of one task: past it the child is killed and the
  /// task fails with TimeLimitExceeded. 0 = none.
  std::chrono::milliseconds time_limit{0};
  /// Default soft limit: past it this_task::stop_requested() is true in the
  /// child, so that the function can finish cleanly. 0 = none.
  std::chrono::milliseconds soft_time_limit{0};
  /// Tasks a busy child may hold ahead of the one it runs (0-8, 0 = none):
  /// sent before it finishes, so that it goes on without waiting for the
  /// parent. A task held ahead is still queued: it starts (and its time
  /// limit counts) when the child claims it; a cancel, a higher priority
  /// waiting, an idle child or the child's death take it back first.
  int prefetch = 4;
};

/// Counters of the process pool at one moment (SupervisorInfo::processes).
struct ProcessPoolInfo {
  bool enabled = false;
  ProcessPoolOptions options{};
  int fork_server_pid = 0;  ///< 0 when not running
  int children = 0;         ///< live child processes (idle, busy or being forked)
  int idle_children = 0;
  std::vector<int> child_pids{};
  std::array<int, priority_count> running{};  ///< by priority
  std::array<int, priority_count> queued{};   ///< by priority
  int running_total = 0;
  int queued_total = 0;
  std::uint64_t completed_total = 0;  ///< tasks that got a result or an exception back from their child
  std::uint64_t spawned = 0;          ///< children forked since start
  std::uint64_t crashed = 0;          ///< children that died on their own (signal, exit)
  std::uint64_t killed = 0;           ///< children killed for a hard time limit or a cancel
  std::uint64_t recycled = 0;         ///< children that exited after max_tasks_per_child
  /// Extra children (forked for a critical task while every child was busy)
  /// that went again once the pool did not need them; not in `recycled`.
  std::uint64_t extra_retired = 0;
  /// Queued tasks held ahead by busy children now (in `queued` too).
  int prefetched = 0;
};

}  // namespace atask
