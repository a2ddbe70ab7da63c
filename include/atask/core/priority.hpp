#pragma once
/// @file
/// Task priorities and their names.

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace atask {

/// How urgently a task wants a pool slot.
///
/// Admission (see ThreadPool): low tasks use `pool_size` slots, normal ones
/// may also take `reserve_normal` slots, high ones also `reserve_high`, and a
/// critical task starts at once, growing the pool past every limit.
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
