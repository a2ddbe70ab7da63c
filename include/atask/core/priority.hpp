#pragma once
/// @file
/// Task priorities and their names.

#include <atask/util/enum_names.hpp>

#include <array>
#include <cstddef>

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
/// Named "low", "normal", "high", "critical" by to_string() / from_string()
/// (enum_names.hpp).
enum class Priority : unsigned char { low = 0, normal = 1, high = 2, critical = 3 };
BOOST_DESCRIBE_ENUM(Priority, low, normal, high, critical)

inline constexpr std::size_t priority_count = 4;

/// All priorities, lowest first.
inline constexpr std::array<Priority, priority_count> all_priorities{Priority::low, Priority::normal,
                                                                     Priority::high, Priority::critical};

constexpr std::size_t index(Priority p) noexcept {
  return static_cast<std::size_t>(p);
}

}  // namespace atask
