#pragma once
// Duration histograms for the supervisor's task metrics
// (Supervisor::task_metrics): counts per bucket of atask::task_time_buckets,
// kept in steady_clock ticks so that an observation is a subtraction and a
// search among integers.

#include <atask/supervisor.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

namespace atask::detail {

using tick = std::chrono::steady_clock::rep;
using tick_period = std::chrono::steady_clock::period;
constexpr std::size_t bucket_count = task_time_buckets.size() + 1;  // + the +Inf bucket

// The bucket bounds in steady_clock ticks, so that an observation is a
// subtraction and a search among integers.
constexpr auto tick_bounds = [] {
  std::array<tick, task_time_buckets.size()> b{};
  for (std::size_t i = 0; i < b.size(); ++i)
    b[i] = static_cast<tick>(task_time_buckets[i] * tick_period::den / tick_period::num + 0.5);
  return b;
}();

// The bucket of a duration: the first bound >= d (Prometheus' `le`).
inline std::size_t bucket_of(tick d) noexcept {
  return static_cast<std::size_t>(std::lower_bound(tick_bounds.begin(), tick_bounds.end(), d) -
                                  tick_bounds.begin());
}

// One histogram of durations. C is std::uint64_t for one only touched under
// a lock, std::atomic<std::uint64_t> for one observed without (relaxed: each
// counter is a tally on its own, nothing is published through it).
template <class C>
struct TimeHistogram {
  std::array<C, bucket_count> counts{};
  C sum{};  // ticks; 2^64 ns is 584 years

  void observe(tick d) noexcept {
    if (d < 0) d = 0;  // a clock read on another core; never by much
    const auto b = bucket_of(d);
    const auto v = static_cast<std::uint64_t>(d);
    if constexpr (std::is_same_v<C, std::uint64_t>) {
      ++counts[b];
      sum += v;
    } else {
      counts[b].fetch_add(1, std::memory_order_relaxed);
      sum.fetch_add(v, std::memory_order_relaxed);
    }
  }

  HistogramSnapshot snapshot() const {
    HistogramSnapshot h;
    h.bounds.assign(task_time_buckets.begin(), task_time_buckets.end());
    h.counts.resize(bucket_count);
    std::uint64_t sum_ticks = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      if constexpr (std::is_same_v<C, std::uint64_t>)
        h.counts[i] = counts[i];
      else
        h.counts[i] = counts[i].load(std::memory_order_relaxed);
      h.count += h.counts[i];
    }
    if constexpr (std::is_same_v<C, std::uint64_t>)
      sum_ticks = sum;
    else
      sum_ticks = sum.load(std::memory_order_relaxed);
    h.sum = static_cast<double>(sum_ticks) * tick_period::num / tick_period::den;
    return h;
  }
};

// Pool threads that start tasks of one priority and kind hit the same
// histogram: one per cache line, so that neighbours do not slow them too.
struct alignas(64) StartHistogram : TimeHistogram<std::atomic<std::uint64_t>> {};

template <class T>
using ByPriorityKind = std::array<std::array<T, task_kind_count>, priority_count>;

}  // namespace atask::detail
