#pragma once
/// @file
/// ThreadPool: the priority thread pool behind the supervisor, usable alone.
///
/// Admission: atasker's rule, event-driven, as stated at atask::Priority.
/// A finishing task hands its thread to the next admissible task in the same
/// critical section; an idle thread is woken directly by the submitter.
///
/// @code
///   atask::ThreadPool pool({.limits = {.pool_size = 4, .reserve_high = 2}});
///   pool.start();
///   pool.post(atask::Priority::high, [] { do_work(); });
/// @endcode

#include <atask/pool/detail/node_alloc.hpp>
#include <atask/core/detail/pool_node.hpp>
#include <atask/core/priority.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

namespace spdlog {
class logger;
}

namespace atask {

/// Sizes of a pool. All values must be >= 0.
struct PoolLimits {
  /// Slots every priority may use; 0 = unlimited (then max_threads, if set,
  /// is the limit and the reserves are carved out of it).
  int pool_size = 0;
  /// Extra slots only normal, high and critical tasks may use.
  int reserve_normal = 0;
  /// Extra slots only high and critical tasks may use.
  int reserve_high = 0;
  /// Threads kept alive while idle (the rest exit after `idle_timeout`).
  int min_threads = 0;
  /// Upper bound on threads for non-critical tasks, 0 = none. Must be at
  /// least pool_size + reserve_normal + reserve_high when pool_size > 0, and
  /// larger than reserve_normal + reserve_high when pool_size is 0.
  int max_threads = 0;
};

/// @throws OptionsError ("<call> - <reason>") if the limits are inconsistent.
void validate(const PoolLimits& limits, const char* call);

struct PoolOptions {
  PoolLimits limits{.pool_size = 4};
  /// Start min_threads threads in start() rather than on demand.
  bool prespawn = false;
  /// An idle thread above min_threads exits after this long.
  std::chrono::milliseconds idle_timeout{10'000};
  /// A thread that runs out of work spins this long before it sleeps, so a
  /// task submitted right after does not pay a futex wake. 0 = never spin.
  /// It is bounded: an idle pool uses no CPU.
  std::chrono::microseconds spin{20};
  /// Thread names: "<name>-N" (cut to 15 characters, the Linux limit).
  std::string name = "atask";
  /// Where errors from post()ed callables go; logged when unset.
  std::function<void(std::exception_ptr)> on_error{};
  std::shared_ptr<spdlog::logger> logger{};
};

/// Counters of a pool at one moment.
struct PoolInfo {
  PoolLimits limits;
  int threads = 0;                            ///< live threads
  int idle_threads = 0;                       ///< threads not running a task
  std::array<int, priority_count> running{};  ///< by priority
  std::array<int, priority_count> queued{};   ///< by priority
  int running_total = 0;
  int queued_total = 0;
  std::uint64_t completed_total = 0;  ///< tasks that ran to the end (ok or error)
};

/// What ThreadPool::close() and ThreadPool::stop() do with the tasks that
/// are queued and not started: `pool.stop(atask::QueuedTasks::run)`.
enum class QueuedTasks : unsigned char {
  cancel,  ///< discard them: their handles end canceled (TaskCanceled)
  run,     ///< still run them before the pool stops
};

/// The priority thread pool.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, except stop(), which must not
/// be called from one of the pool's own threads (it would wait for itself):
/// that throws LifecycleError.
class ThreadPool {
 public:
  /// Starts no thread.
  /// @throws OptionsError for invalid options.
  explicit ThreadPool(PoolOptions options = {});
  /// stop(QueuedTasks::cancel): cancels the queued tasks, waits for the running ones.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Starts accepting tasks (and prespawns).
  /// @throws LifecycleError if already started or stopped.
  void start();

  /// Fire-and-forget: runs f() at priority p. What f throws goes to
  /// on_error.
  /// @throws LifecycleError when the pool is not running.
  template <class F>
  void post(Priority p, F&& f) {
    using Node = PostNode<std::decay_t<F>>;
    void* mem = detail::node_alloc<Node>(static_cast<std::size_t>(p) % detail::small_node_lanes);
    Node* node;
    try {
      node = ::new (mem) Node(p, std::forward<F>(f));
    } catch (...) {
      detail::node_free<Node>(mem);
      throw;
    }
    enqueue(node);
  }

  /// Queues a node (the pool takes one reference; library use).
  /// @throws LifecycleError (after discarding the node) when not running.
  void enqueue(detail::PoolNode* node);
  /// Unlinks a queued node and drops the pool's reference; false if it is not
  /// queued any more (already started, or never queued here).
  bool remove(detail::PoolNode* node) noexcept;

  /// Changes the sizes while running; tasks that become admissible start at
  /// once, extra idle threads exit.
  /// @throws OptionsError for invalid limits.
  void resize(const PoolLimits& limits);

  PoolInfo info() const;

  /// Stops accepting tasks. QueuedTasks::cancel discards the queued tasks
  /// (task handles end canceled); QueuedTasks::run still runs them. Does
  /// not wait.
  void close(QueuedTasks queued);
  /// Waits until nothing runs and nothing is queued, up to the deadline.
  bool wait_idle(std::chrono::steady_clock::time_point deadline) const;
  /// Waits without a deadline.
  void wait_idle() const;
  /// close(queued), wait for running tasks (and, with QueuedTasks::run, the
  /// queued ones), join every thread. A second call is a no-op.
  /// @throws LifecycleError when called from one of the pool's own threads.
  void stop(QueuedTasks queued = QueuedTasks::cancel);
  /// Joins idle threads and lets threads still inside a task go: they exit
  /// on their own when the task returns (cold shutdown). Returns how many
  /// were left running.
  int abandon() noexcept;

  /// True on one of this pool's threads.
  bool on_pool_thread() const noexcept;

 private:
  template <class F>
  class PostNode final : public detail::PoolNode {
    ~PostNode() override = default;

   public:
    template <class G>
    PostNode(Priority p, G&& g) : PoolNode(p), f_(std::forward<G>(g)) {}
    void run() override { f_(); }
    void discard() noexcept override {}
    void release() noexcept override {
      this->~PostNode();
      detail::node_free<PostNode>(this);
    }

   private:
    F f_;
  };

  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace atask
