#include "supervisor/stop_stages.hpp"

#include "supervisor/options.hpp"
#include "supervisor/task_registry.hpp"

#include <spdlog/spdlog.h>

#include <utility>

namespace atask::detail {

StopStages::StopStages(boost::asio::io_context& loop, TaskRegistry& tasks, Listener& listener,
                       std::shared_ptr<spdlog::logger> log, std::string id)
    : loop_(loop), tasks_(tasks), listener_(listener), log_(std::move(log)), id_(std::move(id)) {}

void StopStages::set_stage(StopStage s) {
  stage_ = s;
  listener_.stage_entered(s);
}

void StopStages::arm(std::chrono::milliseconds d, void (StopStages::*next)()) {
  if (forever(d)) return;
  arm_at(std::chrono::steady_clock::now() + d, next);
}

void StopStages::arm_at(time_point when, void (StopStages::*next)()) {
  timer_.emplace(loop_, when);
  armed_ = when;
  timer_->async_wait([this, next, when](boost::system::error_code ec) {
    if (ec) return;
    if (armed_ == when) armed_.reset();
    (this->*next)();
  });
}

void StopStages::disarm() noexcept {
  if (timer_) timer_->cancel();
  armed_.reset();
}

void StopStages::begin(std::optional<time_point> warm_deadline, std::chrono::milliseconds soft_timeout) {
  soft_timeout_ = soft_timeout;
  set_stage(StopStage::warm);
  if (tasks_.empty()) return drain_done();
  if (advances_pending_ > 0) {
    --advances_pending_;
    return warm_deadline_reached();
  }
  // The warm stage began with the stop: steps above the pool may have
  // used part of it already.
  if (warm_deadline) arm_at(*warm_deadline, &StopStages::warm_deadline_reached);
}

void StopStages::warm_deadline_reached() {
  if (drained_ || stage_ != StopStage::warm) return;
  disarm();
  set_stage(StopStage::soft);
  tasks_.cancel_pending(true, "reached the soft shutdown stage");
  auto running = tasks_.live_tasks([](auto& t) { return t.status() == TaskStatus::started; });
  log_->warn("{}: soft stage: requesting stop of {} running tasks, up to {} ms", id_, running.size(),
             soft_timeout_.count());
  for (auto& t : running) t->request_stop();
  listener_.stop_requested(running.size());
  if (tasks_.empty()) return drain_done();
  if (advances_pending_ > 0) {
    --advances_pending_;
    return soft_deadline_reached();
  }
  arm(soft_timeout_, &StopStages::soft_deadline_reached);
}

void StopStages::soft_deadline_reached() {
  if (drained_ || stage_ != StopStage::soft) return;
  disarm();
  set_stage(StopStage::cold);
  auto left = tasks_.live_tasks([](auto&) { return true; });
  std::vector<TaskInfo> infos;
  for (auto& t : left) {
    TaskInfo i = t->info();
    log_->error("{}: cold stage: abandoning task #{} ({}, {}, status {})", id_, i.id,
                i.name.empty() ? "unnamed" : i.name, to_string(i.kind), to_string(i.status));
    t->abandon(std::make_exception_ptr(TaskAbandoned("task #" + std::to_string(i.id) +
                                                     " was abandoned by the cold shutdown of supervisor '" +
                                                     id_ + "'")));
    infos.push_back(std::move(i));
  }
  listener_.abandoned(std::move(infos));
  drain_done();
}

void StopStages::advance() {
  if (stage_ == StopStage::warm)
    warm_deadline_reached();
  else if (stage_ == StopStage::soft)
    soft_deadline_reached();
  else if (stage_ == StopStage::none)
    ++advances_pending_;  // closed, but the warm stage has not begun yet: skip it when it does
}

void StopStages::tasks_drained() {
  if (stage_ != StopStage::none) drain_done();
}

void StopStages::release() noexcept {
  timer_.reset();
  armed_.reset();
}

void StopStages::drain_done() {
  disarm();
  if (drained_) return;
  drained_ = true;
  listener_.drained();
}

}  // namespace atask::detail
