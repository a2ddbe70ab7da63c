#include <atask/workers/event.hpp>

#include <algorithm>

namespace atask {

bool TriggerSource::trigger(TriggerMode mode) {
  {
    std::lock_guard lk(m_);
    if (!active_locked()) return false;
    if (mode == TriggerMode::force) {
      ++pending_runs_;
      ++triggered_runs_;
    } else {
      if (pending_runs_ == 0) pending_runs_ = 1;
      if (triggered_runs_ == 0) triggered_runs_ = 1;  // a run already pending (a tick's) serves it too
    }
    triggered_locked();
    work_arrived_then_unlock_locked();
  }
  after_unlock();
  return true;
}

bool TriggerSource::add_run_locked() noexcept {
  if (pending_runs_ != 0) return false;
  pending_runs_ = 1;
  return true;
}

bool TriggerSource::take_run_locked() {
  if (pending_runs_ == 0) return false;
  --pending_runs_;
  triggered_runs_ = std::min(triggered_runs_, pending_runs_);
  return true;
}

void TriggerSource::apply_start_locked(const StartOptions&) {
  pending_runs_ = triggered_runs_ = 0;
}

void TriggerSource::stopping_locked() {
  // Runs that trigger() promised and that will not happen now.
  triggers_dropped_ += std::min(triggered_runs_, pending_runs_);
  pending_runs_ = triggered_runs_ = 0;
}

void TriggerSource::add_info_locked(WorkerInfo& info) const {
  info.pending_runs = pending_runs_;
  info.triggers_dropped = triggers_dropped_;
  info.can_trigger = true;
}

bool trigger(Worker& w, TriggerMode mode) {
  if (auto* t = dynamic_cast<TriggerSource*>(&w)) return t->trigger(mode);
  throw LifecycleError("atask::trigger() - worker '" + w.name() + "' is " +
                       detail::kind_with_article(w.kind()) +
                       " worker: only event and interval workers can be triggered");
}

}  // namespace atask
