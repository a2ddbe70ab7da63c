#pragma once
/// @file
/// Consumer: the worker side of the distributed mode. It plugs into a
/// Supervisor as a step, takes tasks from Redis queues and runs each one by
/// its registered kind (pool thread, coroutine on an aloop, child of the
/// process pool) through a TaskRegistry.
///
/// @code
///   atask::TaskRegistry tasks;
///   tasks.add("add", [](int a, int b) { return a + b; });
///
///   atask::Supervisor sv;
///   atask::distributed::Consumer worker(sv, tasks, {.broker = "redis://127.0.0.1:6379",
///                                                   .queues = {"default"}});
///   sv.start();   // the "consumer:<name>" step starts after the pool
///   sv.block();   // SIGTERM: stops fetching, finishes what runs, hands back the rest
/// @endcode
///
/// What it guarantees (docs/distributed.md has the details and limits):
///  - an entry stays in Redis until its outcome is stored, and the outcome
///    and the acknowledgement are one atomic step;
///  - heartbeats go from the supervisor's io_context on a connection of
///    their own, never from task code: a long CPU-bound task does not make
///    its worker look dead;
///  - the tasks of a worker silent for `dead_after` go back to their queues
///    (any worker's reaper does it), and a late finish of the old run is
///    fenced off by the attempt number.

#include <atask/core/errors.hpp>
#include <atask/tasks/limits.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace atask {
class Supervisor;
class TaskRegistry;
}  // namespace atask

namespace atask::distributed {

struct ConsumerOptions {
  /// redis://[[user]:password@]host[:port][/db]; the password is never logged.
  std::string broker = "redis://127.0.0.1:6379";
  /// Queues to take tasks from. Within one priority the queues are read in
  /// this order; a higher priority always first.
  std::vector<std::string> queues{"default"};
  /// Tasks taken and not yet finished, at most (queued on the pools or
  /// running). 0: four times the pool's size (Celery's default too). The
  /// worker takes more once a quarter of them (at least one) is free, in one
  /// read, or `refill_wait` after a slot freed, whichever comes first. A
  /// wake-up after an idle wait may take one more entry per stream (see
  /// docs/distributed.md). Long tasks and several workers: a smaller
  /// prefetch spreads them better (1 = one task at a time).
  std::size_t prefetch = 0;
  /// How long free slots fewer than a quarter of `prefetch` wait for more
  /// to free before the worker reads for them anyway: one read for several
  /// tasks under load, and no task left waiting in its queue for long while
  /// a slot is free. 0: read as soon as any slot is free.
  std::chrono::milliseconds refill_wait{2};
  /// Cluster-wide limits per queue (tasks/limits.hpp), published to Redis
  /// when this worker joins; the last worker to join wins. A queue not named
  /// here keeps what others set.
  std::map<std::string, TaskLimits> queue_limits{};
  /// The consumer's name in Redis; empty: "<host>:<pid>:<random>". Must be
  /// unique in the cluster.
  std::string name{};
  /// The time limit of a task whose send and registration give none (0:
  /// none). Past it the task is asked to stop (TaskHandle::cancel) and fails
  /// with atask::TimeoutError, even when it returns a value after the stop
  /// request; a process task's child is killed by the
  /// process pool's own ProcessPoolOptions::time_limit, not by this.
  std::chrono::milliseconds time_limit{0};
  /// Published with this worker in Redis (Client::workers()), for people
  /// and dashboards: the plugins it loaded, a version, a role. Keys: letters,
  /// digits and _ . - only.
  std::map<std::string, std::string> labels{};
  /// Heartbeat period, and the silence after which a worker counts as dead
  /// and its tasks go back to their queues.
  std::chrono::milliseconds heartbeat{1'000};
  std::chrono::milliseconds dead_after{5'000};
  /// How often this worker looks for dead workers (one sweep per period runs
  /// in the whole cluster).
  std::chrono::milliseconds reap_every{1'000};
  /// How long one blocking read waits for work.
  std::chrono::milliseconds block{1'000};
  std::chrono::milliseconds connect_timeout{5'000};
  /// Reconnect back-off: doubles from 50 ms up to this.
  std::chrono::milliseconds max_backoff{2'000};
  /// On stop: how long running tasks may finish; then they are asked to stop
  /// (TaskHandle::cancel), and what has not finished goes back to its queue.
  std::chrono::milliseconds stop_timeout{30'000};
};

/// Counters since start.
struct ConsumerInfo {
  std::string name;
  bool connected = false;
  std::size_t in_flight = 0;
  std::uint64_t received = 0, succeeded = 0, failed = 0, canceled = 0, dead_lettered = 0, stale = 0;
  std::uint64_t reaped = 0;   ///< entries this worker's sweeps handed back from dead workers
  std::uint64_t retried = 0;  ///< failed runs put back, delayed, for another attempt
  /// Tasks handed to this worker already started, while it waited idle for
  /// work (received counts them too): each saved a round trip to Redis
  /// (docs/distributed.md, "Hand-off").
  std::uint64_t handed = 0;
  /// Steps of Redis's clock this worker saw: it ran ahead of this worker's
  /// monotonic clock by more than half of dead_after between two of its
  /// heartbeats. After each, no worker is presumed dead for dead_after
  /// (docs/distributed.md, "Failure table").
  std::uint64_t clock_steps = 0;
};

/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
class Consumer {
 public:
  /// Before sv.start(): adds the step "consumer:<name>" (after "pool").
  /// While sv runs: starts at once.
  /// @throws OptionsError for bad options (a malformed URL or queue name,
  ///         no queue, non-positive periods, dead_after not above heartbeat).
  /// @throws LifecycleError once sv has stopped.
  Consumer(Supervisor& sv, const TaskRegistry& tasks, ConsumerOptions options = {});
  /// stop().
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  /// Stops taking tasks, lets the running ones finish (stop_timeout), hands
  /// back to Redis what did not, and leaves the cluster. Idempotent; called
  /// by the supervisor's stop as well.
  void stop();

  const std::string& name() const noexcept;
  ConsumerInfo info() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// Inside a thread or process task that a Consumer runs: reports progress to
/// the client, whose RemoteHandle::progress() and on_progress() see it
/// (fraction clamped to [0, 1]). Cheap to call often: while one report is on
/// its way the next ones are folded into the latest. In a thread task it
/// returns false, sending nothing, when no consumer runs the task (outside a
/// task, a task run locally). In a process task it returns true once the
/// report is on its way to the worker's process, which drops it when the task
/// is not a consumer's. In a coroutine task it works as in a thread task,
/// whenever the coroutine runs (docs/distributed.md).
bool report_progress(double fraction, std::string_view message = {});

}  // namespace atask::distributed
