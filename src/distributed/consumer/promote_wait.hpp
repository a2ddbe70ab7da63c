// What the consumer's delay loop does after a call of atask_promote
// (fetch.cpp): the earliest due it knows of, and how long it sleeps. Apart
// so that the decision has tests of its own.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace atask::distributed::detail {

struct PromoteWait {
  std::int64_t next_due;  ///< server ms; -1: none
  std::chrono::milliseconds wait;
};

/// `redis_next`: the earliest due the call returned (server ms; -1: none
/// left), `now`: Redis's clock in the call, `heard`: the earliest due a
/// message announced while the call ran (-1: none; 0: one it did not name).
/// A task queued while the call ran may be missing from its answer, so a
/// due heard meanwhile counts too: the earlier of the two wins, and a due
/// not named means look again at once. The wait is at most `block` (a
/// safety net for a missed message).
inline PromoteWait promote_wait(std::int64_t redis_next, std::int64_t heard, std::int64_t now,
                                std::chrono::milliseconds block) {
  using std::chrono::milliseconds;
  std::int64_t next = redis_next;
  if (heard > 0 && (next < 0 || heard < next)) next = heard;
  if (heard == 0) return {next, milliseconds(0)};
  if (next < 0) return {next, block};
  return {next, std::clamp(milliseconds(next - now), milliseconds(0), block)};
}

}  // namespace atask::distributed::detail
