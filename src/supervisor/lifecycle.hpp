#pragma once
// Where the supervisor is in its life: created -> running -> stopping ->
// stopped (or created -> stopped when stopped before it started). One
// atomic, read anywhere without a lock; written by Shutdown only, under its
// stop_m (see shutdown.hpp).

#include <atask/supervisor/supervisor.hpp>

#include <atomic>
#include <string>

namespace atask::detail {

class Lifecycle {
 public:
  using State = SupervisorState;

  State load() const noexcept { return state_.load(); }
  void store(State s) noexcept { state_.store(s); }
  bool running() const noexcept { return load() == State::running; }
  /// stopping or stopped
  bool closing() const noexcept {
    auto s = load();
    return s == State::stopping || s == State::stopped;
  }

  /// to_string(load()), for messages.
  std::string name() const { return std::string(to_string(load())); }

 private:
  std::atomic<State> state_{State::created};
};

}  // namespace atask::detail
