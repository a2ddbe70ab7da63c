#pragma once
/// @file
/// Task priorities and their names.

#include <atask/util/enum_names.hpp>

#include <array>
#include <cstddef>

namespace atask {

/// How urgently a task wants a pool slot.
///
/// Admission (see ThreadPool): low tasks use `pool_size` slots, normal ones
/// may also take `reserve_normal` slots, high ones also `reserve_high`, and a
/// critical task starts at once, growing the pool past every limit.
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
