#include "supervisor/aloop_set.hpp"

#include <atask/core/errors.hpp>

#include <utility>

namespace atask::detail {

AloopSet::AloopSet(const Lifecycle& life, std::string id, std::string default_name)
    : life_(life), id_(std::move(id)), default_name_(std::move(default_name)) {}

void AloopSet::start_all() {
  std::lock_guard lk(aloop_m_);
  live_ = true;
  for (auto& [n, a] : aloops_) a->start();
}

void AloopSet::stop_all() {
  std::vector<Aloop*> loops;
  {
    std::lock_guard lk(aloop_m_);
    live_ = false;
    done_ = true;
    for (auto& [n, a] : aloops_) loops.push_back(a.get());
  }
  for (auto* a : loops) a->stop();
}

Aloop& AloopSet::create(const std::string& name, bool make_default) {
  if (name.empty()) throw Error("Supervisor::create_aloop() - the name must not be empty");
  if (life_.closing())
    throw LifecycleError("Supervisor::create_aloop() - supervisor '" + id_ + "' is " + life_.name());
  std::lock_guard lk(aloop_m_);
  if (done_)
    throw LifecycleError("Supervisor::create_aloop() - supervisor '" + id_ + "' has stopped its aloops");
  if (aloops_.count(name)) throw Error("Supervisor::create_aloop() - an aloop named '" + name + "' exists");
  Aloop& a = start_locked(name);
  if (make_default) default_name_ = name;
  return a;
}

Aloop& AloopSet::find(std::string_view name) {
  std::lock_guard lk(aloop_m_);
  auto it = aloops_.find(name);
  if (it == aloops_.end()) throw Error("Supervisor::aloop() - no aloop named '" + std::string(name) + "'");
  return *it->second;
}

Aloop& AloopSet::default_aloop() {
  std::lock_guard lk(aloop_m_);
  if (auto it = aloops_.find(default_name_); it != aloops_.end()) return *it->second;
  if (life_.closing() || done_)
    throw LifecycleError("Supervisor::default_aloop() - supervisor '" + id_ + "' is " + life_.name());
  return start_locked(default_name_);
}

void AloopSet::stop(std::string_view name) {
  Aloop* a = nullptr;
  {
    std::lock_guard lk(aloop_m_);
    auto it = aloops_.find(name);
    if (it == aloops_.end())
      throw Error("Supervisor::stop_aloop() - no aloop named '" + std::string(name) + "'");
    a = it->second.get();
    retired_.push_back(std::move(it->second));
    aloops_.erase(it);
  }
  a->stop();
}

bool AloopSet::on_thread() const {
  std::lock_guard lk(aloop_m_);
  for (auto& [n, a] : aloops_)
    if (a->running() && a->on_thread()) return true;  // a stopped aloop's thread id may be reused
  return false;
}

std::vector<AloopInfo> AloopSet::infos() const {
  std::vector<AloopInfo> out;
  std::lock_guard lk(aloop_m_);
  for (auto& [n, a] : aloops_) out.push_back({n, n == default_name_, a->running()});
  return out;
}

Aloop& AloopSet::start_locked(const std::string& name) {
  auto [it, inserted] = aloops_.emplace(name, std::make_unique<Aloop>(name));
  if (live_) it->second->start();
  return *it->second;
}

}  // namespace atask::detail
