#pragma once
// A mutex for critical sections of a few dozen nanoseconds that several
// threads hit per task. std::mutex (glibc) goes to the kernel as soon as it
// is contended; here a contended lock spins briefly first, then sleeps on a
// futex (std::atomic::wait). Drepper's three-state mutex: 0 free, 1 locked,
// 2 locked with possible sleepers.

#include "util/platform.hpp"

#include <atomic>

namespace atask::detail {

class SpinMutex {
 public:
  void lock() noexcept {
    int c = 0;
    if (state_.compare_exchange_strong(c, 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
    for (int i = 0; i < 128; ++i) {
      cpu_relax();
      c = 0;
      if (state_.load(std::memory_order_relaxed) == 0 &&
          state_.compare_exchange_weak(c, 1, std::memory_order_acquire, std::memory_order_relaxed))
        return;
    }
    if (c != 2) c = state_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
      state_.wait(2, std::memory_order_relaxed);
      c = state_.exchange(2, std::memory_order_acquire);
    }
  }

  bool try_lock() noexcept {
    int c = 0;
    return state_.compare_exchange_strong(c, 1, std::memory_order_acquire, std::memory_order_relaxed);
  }

  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }

 private:
  std::atomic<int> state_{0};
};

}  // namespace atask::detail
