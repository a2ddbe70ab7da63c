#pragma once
// The supervisor's options: checks at construction and the pieces other
// parts take from them (src/supervisor/options.cpp).

#include <atask/supervisor/supervisor.hpp>

#include <chrono>

namespace atask::detail {

/// The thread-pool sizes among the options.
PoolLimits limits_of(const SupervisorOptions& o);

/// `o` itself once every field is checked; OptionsError naming
/// Supervisor::Supervisor() and the field otherwise.
const SupervisorOptions& validated(const SupervisorOptions& o);

// A timer can't take milliseconds::max(): treat anything past a century as "never".
inline bool forever(std::chrono::milliseconds d) {
  return d > std::chrono::hours(24 * 365 * 100);
}

}  // namespace atask::detail
