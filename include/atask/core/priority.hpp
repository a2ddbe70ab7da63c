#pragma once
/// @file
/// Task priorities and their names.

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace atask {

/// How urgently a task wants a pool slot: a thread of the priority pool
/// (ThreadPool, sized by PoolLimits), or a child of the process pool
/// (sized by ProcessPoolOptions, the same rule with children for threads).
///
/// Admission, with `running` the number of tasks executing now (critical
/// ones included):
///  - low starts when running < pool_size and no normal/high task waits,
///  - normal when running < pool_size + reserve_normal and no high task waits,
///  - high when running < pool_size + reserve_normal + reserve_high,
///  - critical at once, growing the pool past every limit: an extra thread is
///    started if every thread is busy (the process pool forks an extra child,
///    which goes again once idle).
/// Coroutine tasks hold no slot (see TaskOptions::priority).
enum class Priority : unsigned char { low = 0, normal = 1, high = 2, critical = 3 };

inline constexpr std::size_t priority_count = 4;

/// All priorities, lowest first.
inline constexpr std::array<Priority, priority_count> all_priorities{Priority::low, Priority::normal,
                                                                     Priority::high, Priority::critical};

/// "low", "normal", "high" or "critical".
constexpr std::string_view to_string(Priority p) noexcept {
  switch (p) {
    case Priority::low:
      return "low";
    case Priority::normal:
      return "normal";
    case Priority::high:
      return "high";
    case Priority::critical:
      return "critical";
  }
  return "?";
}

/// Parses a priority name; nullopt for anything else.
constexpr std::optional<Priority> priority_from_string(std::string_view s) noexcept {
  for (Priority p : all_priorities)
    if (to_string(p) == s) return p;
  return std::nullopt;
}

constexpr std::size_t index(Priority p) noexcept {
  return static_cast<std::size_t>(p);
}

}  // namespace atask
