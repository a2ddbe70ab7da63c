#pragma once
// The stages of a shutdown (StopOptions has the user's view): warm - the
// tasks may finish; soft, once the warm deadline has passed - what is still
// queued is canceled and every running task is asked to stop; cold, once
// soft_timeout has passed too - what still runs is abandoned. The shutdown
// ends (drained) as soon as no task is left, in whichever stage that is, and
// the later stages never come. A signal moves to the next stage at once.
//
// No lock of its own: it lives on the supervisor's loop thread (the stages
// are timers there; signals and the registry reach it through asio::post).
// What other threads read of it - the stage reached, the counts, "drained" -
// goes to a Listener (Shutdown, which keeps it under stop_m).
//
// Each step is a call, so tests drive it without a clock: run a manual
// io_context, or call warm_deadline_reached() / soft_deadline_reached()
// where the timers would (armed() says when they would fire).

#include <atask/supervisor/supervisor.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace atask::detail {

class TaskRegistry;

class StopStages {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  /// Told of each step, on the loop thread.
  class Listener {
   public:
    virtual void stage_entered(StopStage s) = 0;
    /// The soft stage asked `n` running tasks to stop.
    virtual void stop_requested(std::size_t n) = 0;
    /// The cold stage abandoned these tasks.
    virtual void abandoned(std::vector<TaskInfo> tasks) = 0;
    /// No task is left (once per shutdown): the stages are over.
    virtual void drained() = 0;

   protected:
    ~Listener() = default;
  };

  /// `tasks` must be closed (TaskRegistry::close) before begin(); `id` names
  /// the supervisor in log lines and errors.
  StopStages(boost::asio::io_context& loop, TaskRegistry& tasks, Listener& listener,
             std::shared_ptr<spdlog::logger> log, std::string id);
  StopStages(const StopStages&) = delete;
  StopStages& operator=(const StopStages&) = delete;

  // -- loop thread only ----------------------------------------------------------
  /// The warm stage begins; it ends at `warm_deadline` (nullopt: never), the
  /// soft one soft_timeout later (past a century: never).
  void begin(std::optional<time_point> warm_deadline, std::chrono::milliseconds soft_timeout);
  /// What the stage timer calls: warm -> soft, soft -> cold. Nothing in any
  /// other stage, or once drained.
  void warm_deadline_reached();
  void soft_deadline_reached();
  /// A signal: the next stage now. Before begin(), the warm stage is skipped
  /// when it begins (one skip per signal).
  void advance();
  /// The registry became empty (its `drained` hook, posted to the loop).
  /// Nothing before begin(): begin() looks for itself.
  void tasks_drained();
  /// The loop ends: the stage timer goes.
  void release() noexcept;

  StopStage stage() const noexcept { return stage_; }
  bool drained() const noexcept { return drained_; }
  /// When the stage timer fires, while one is armed.
  std::optional<time_point> armed() const noexcept { return armed_; }

 private:
  void set_stage(StopStage s);
  void arm(std::chrono::milliseconds d, void (StopStages::*next)());
  void arm_at(time_point when, void (StopStages::*next)());
  void disarm() noexcept;
  void drain_done();

  boost::asio::io_context& loop_;
  TaskRegistry& tasks_;
  Listener& listener_;
  const std::shared_ptr<spdlog::logger> log_;
  const std::string id_;

  StopStage stage_ = StopStage::none;
  int advances_pending_ = 0;  // signals that came before the warm stage began
  bool drained_ = false;
  std::chrono::milliseconds soft_timeout_{0};
  std::optional<boost::asio::steady_timer> timer_;
  std::optional<time_point> armed_;
};

}  // namespace atask::detail
