// The workers of one supervisor (see include/atask/supervisor/detail/worker_registry.hpp).
#include <atask/supervisor/detail/worker_registry.hpp>
#include <atask/core/errors.hpp>

namespace atask::detail {

Supervisor* WorkerRegistry::supervisor() const noexcept {
  std::lock_guard lk(m_);
  return sv_;
}

void WorkerRegistry::add(RegisteredWorker& w, const std::string& name) {
  std::lock_guard lk(m_);
  if (!sv_) throw LifecycleError("Worker - the supervisor is gone");
  if (by_name_.count(name))
    throw OptionsError("a worker named '" + name + "' already exists in this supervisor");
  const std::uint64_t seq = next_seq_++;
  by_name_.emplace(name, seq);
  by_seq_.emplace(seq, Entry{name, &w});
  seq_of_.emplace(&w, seq);
}

void WorkerRegistry::publish(RegisteredWorker& w) noexcept {
  {
    std::lock_guard lk(m_);
    auto self = seq_of_.find(&w);
    if (self == seq_of_.end()) return;
    auto& e = by_seq_.at(self->second);
    if (e.published) return;
    e.published = true;
    ++published_;
    if (sv_) return;
  }
  // detach() ran while w was being constructed, and skipped it.
  w.registry_supervisor_gone();
}

void WorkerRegistry::rename(RegisteredWorker& w, const std::string& from, const std::string& to) {
  std::lock_guard lk(m_);
  auto self = seq_of_.find(&w);
  if (self == seq_of_.end()) return;
  if (auto it = by_name_.find(to); it != by_name_.end() && it->second != self->second)
    throw OptionsError("a worker named '" + to + "' already exists in this supervisor");
  by_name_.erase(from);
  by_name_[to] = self->second;
  by_seq_[self->second].name = to;
}

void WorkerRegistry::remove(RegisteredWorker& w) noexcept {
  std::unique_lock lk(m_);
  auto self = seq_of_.find(&w);
  if (self == seq_of_.end()) return;
  auto e = by_seq_.find(self->second);
  // stop_all() / with_worker() use the worker without the lock: wait for them.
  pins_cv_.wait(lk, [&] { return e->second.pins == 0; });
  if (e->second.published) --published_;
  by_name_.erase(e->second.name);
  by_seq_.erase(e);
  seq_of_.erase(self);
}

std::vector<std::string> WorkerRegistry::stop_all(std::chrono::steady_clock::time_point deadline) noexcept {
  // No lock while workers run their stop hooks (user code that may call back
  // into the supervisor); pinning keeps the copied workers from being
  // destroyed meanwhile.
  std::vector<std::pair<std::uint64_t, Entry>> ws;
  {
    std::lock_guard lk(m_);
    for (auto& [seq, e] : by_seq_) {
      if (!e.published) continue;
      ++e.pins;
      ws.emplace_back(seq, e);
    }
  }
  std::vector<std::string> late;
  for (auto& [seq, e] : ws) {
    try {
      e.w->registry_stop();
    } catch (...) {
    }
  }
  for (auto& [seq, e] : ws)
    if (!e.w->registry_wait_stopped_until(deadline)) late.push_back(e.name);
  for (auto& [seq, e] : ws) unpin(seq);
  return late;
}

void WorkerRegistry::unpin(std::uint64_t seq) noexcept {
  std::lock_guard lk(m_);
  if (auto it = by_seq_.find(seq); it != by_seq_.end() && --it->second.pins == 0) pins_cv_.notify_all();
}

bool WorkerRegistry::with_worker(std::string_view name, const std::function<void(Worker&)>& f) {
  std::uint64_t seq = 0;
  RegisteredWorker* w = nullptr;
  {
    std::lock_guard lk(m_);
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return false;
    seq = it->second;
    auto& e = by_seq_.at(seq);
    if (!e.published) return false;
    ++e.pins;
    w = e.w;
  }
  struct Unpin {
    WorkerRegistry* r;
    std::uint64_t seq;
    ~Unpin() { r->unpin(seq); }
  } unpin_on_exit{this, seq};
  f(w->registered_worker());
  return true;
}

std::vector<WorkerInfo> WorkerRegistry::infos() const {
  std::lock_guard lk(m_);
  std::vector<WorkerInfo> out;
  out.reserve(by_seq_.size());
  for (auto& [seq, e] : by_seq_)
    if (e.published) out.push_back(e.w->registry_info());
  return out;
}

std::size_t WorkerRegistry::size() const {
  std::lock_guard lk(m_);
  return published_;
}

void WorkerRegistry::detach() noexcept {
  std::lock_guard lk(m_);
  sv_ = nullptr;
  for (auto& [seq, e] : by_seq_)
    if (e.published) e.w->registry_supervisor_gone();
}

}  // namespace atask::detail
