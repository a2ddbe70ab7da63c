#pragma once
// Where the supervisor is in its life: created -> running -> stopping ->
// stopped (or created -> stopped when stopped before it started). One
// atomic, read anywhere without a lock; written by Shutdown only, under its
// stop_m (see shutdown.hpp).

#include <atomic>

namespace atask::detail {

class Lifecycle {
 public:
  enum class State : int { created, running, stopping, stopped };

  State load() const noexcept { return state_.load(); }
  void store(State s) noexcept { state_.store(s); }
  bool running() const noexcept { return load() == State::running; }
  /// stopping or stopped
  bool closing() const noexcept {
    auto s = load();
    return s == State::stopping || s == State::stopped;
  }

  const char* name() const noexcept {
    switch (load()) {
      case State::created:
        return "created";
      case State::running:
        return "running";
      case State::stopping:
        return "stopping";
      case State::stopped:
        return "stopped";
    }
    return "?";
  }

 private:
  std::atomic<State> state_{State::created};
};

}  // namespace atask::detail
