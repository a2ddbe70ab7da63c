#pragma once
// The supervisor's life from start() to the end of a stop: the steps and
// their boot order, the boot walk, the stopper thread and its walk over the
// stop hooks, closing to new work, the stop stages (StopStages, which it
// owns), SIGINT/SIGTERM, and the reports stop() and block() return.
//
// How the pieces fit (docs/steps.md has the user's view):
//  - start() walks the boot order on the caller's thread; the "pool" step
//    makes the supervisor `running` (it takes tasks from then on).
//  - A stop begins once (stop_begun) and is carried out by one stopper
//    thread, which runs every started step's stop hook in reverse order;
//    the first thread that waits for the stop joins it (finish_stop).
//  - close() ends `running`: the warm stage starts, the stages run on the
//    loop as timers. A stop that can wait closes in the "pool" step's stop,
//    so the steps above the pool stop while work is still taken; one that
//    cannot wait closes at once, before the stopper walks.
//
// Lock: stop_m, its own. It takes reg_m (TaskRegistry) inside stop_m, in
// open() and close(); never the other way round. Lock order: see the top of
// src/supervisor/supervisor.cpp.

#include <atask/supervisor/supervisor.hpp>

#include "supervisor/step_graph.hpp"
#include "supervisor/lifecycle.hpp"
#include "supervisor/stop_stages.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace atask::detail {

class TaskRegistry;

class Shutdown final : StopStages::Listener {
 public:
  /// `owner` is what step hooks receive; `life` is written here only.
  /// Closing tells `workers` to stop, closes `pool` and cancels in `tasks`.
  Shutdown(Supervisor& owner, const SupervisorOptions& opt, std::shared_ptr<spdlog::logger> log,
           boost::asio::io_context& loop, Lifecycle& life, TaskRegistry& tasks, ThreadPool& pool,
           WorkerRegistry& workers);
  Shutdown(const Shutdown&) = delete;
  Shutdown& operator=(const Shutdown&) = delete;

  // -- steps --------------------------------------------------------------------
  /// A built-in step (registered first, at construction).
  void add_builtin(Step step);
  /// Supervisor::add_step(), boot_order(), start(). start() is false when
  /// a stop came while it ran (the stop is under way when it returns).
  void add_step(Step step);
  std::vector<std::string> boot_order() const;
  bool start();
  std::vector<StepInfo> step_infos() const;

  // -- stopping -------------------------------------------------------------------
  /// Supervisor::stop() (options already checked) and block(). `own_thread`:
  /// called on one of the supervisor's threads; `on_loop`: on its loop.
  StopReport stop(const StopOptions& o, bool own_thread, bool on_loop);
  StopReport block(bool own_thread);
  /// start() was called and the stop is not finished (joined) yet.
  bool unfinished() const;
  /// The caller is the stopper thread or the thread inside start().
  bool on_own_thread() const noexcept;

  // -- for the built-in steps ----------------------------------------------------------
  /// The "pool" step has started: the supervisor takes tasks from now on.
  void open();
  /// Ends `running`: no new tasks, the warm stage begins. Any thread, not
  /// under stop_m; only the first call does something (true).
  bool close(bool tell_workers);
  /// The "pool" step's stop: waits until the stages are over; returns the
  /// stage reached and the soft budget.
  std::pair<StopStage, std::chrono::milliseconds> wait_drained();
  /// The end of the warm stage (time_point::max() when it has none).
  std::chrono::steady_clock::time_point warm_deadline() const;
  /// The "loop" step, before the loop runs: SIGINT/SIGTERM start or
  /// escalate a shutdown.
  void listen_for_signals();
  /// The loop thread, as the loop ends: the signal set and the stage timer go.
  void release_loop_objects() noexcept;
  /// The loop thread: the registry became empty (its `drained` hook).
  void tasks_drained() { stages_.tasks_drained(); }

 private:
  void begin_locked(const StopOptions& o, bool can_wait);
  void spawn_stopper_locked();
  void walk();
  StopReport finish_stop();
  StopReport report_now(bool completed);
  void wait_signal();
  void on_signal(int sig);

  // StopStages::Listener (loop thread)
  void stage_entered(StopStage s) override;
  void stop_requested(std::size_t n) override;
  void abandoned(std::vector<TaskInfo> tasks) override;
  void drained() override;

  Supervisor& owner_;
  const std::string id_;
  const StopOptions signal_stop_;
  const std::shared_ptr<spdlog::logger> log_;
  boost::asio::io_context& loop_;
  Lifecycle& life_;
  TaskRegistry& tasks_;
  ThreadPool& pool_;
  WorkerRegistry& workers_;

  // Under stop_m. Steps are in registration order (built-ins first) and do
  // not change once start() was called; `order` is the boot order start()
  // fixed; `started` is written by the start() thread, then read by the
  // stopper, which exists only once start() stopped walking.
  mutable std::mutex stop_m_;
  std::condition_variable stop_cv_;
  std::vector<StepSlot> steps_;
  std::vector<std::size_t> order_, started_;
  bool start_called_ = false, booting_ = false;
  std::atomic<std::thread::id> boot_thread_{};
  std::optional<StopOptions> pending_stop_;  // asked for while booting
  bool stop_begun_ = false, graceful_ = false;
  std::optional<std::chrono::steady_clock::time_point> warm_deadline_;  // nullopt: none
  std::thread stopper_;
  std::atomic<std::thread::id> stopper_id_{};
  bool walk_done_ = false, join_claimed_ = false, joined_ = false;
  StopOptions stop_opts_;  // fixed when the stop begins
  bool drained_ = false;
  StopReport report_;

  // Loop thread.
  StopStages stages_;
  std::optional<boost::asio::signal_set> signals_;
};

}  // namespace atask::detail
