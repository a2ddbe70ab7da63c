#include "supervisor/options.hpp"

#include <string>

namespace atask::detail {

PoolLimits limits_of(const SupervisorOptions& o) {
  return {.pool_size = o.pool_size,
          .reserve_normal = o.reserve_normal,
          .reserve_high = o.reserve_high,
          .min_threads = o.min_threads,
          .max_threads = o.max_threads};
}

const SupervisorOptions& validated(const SupervisorOptions& o) {
  validate(limits_of(o), "Supervisor::Supervisor()");
  auto fail = [](const std::string& why) { throw OptionsError("Supervisor::Supervisor() - " + why); };
  if (o.id.empty()) fail("id must not be empty");
  if (o.timeout_warning.count() < 0 || o.timeout_critical.count() < 0)
    fail("timeout_warning and timeout_critical must be >= 0");
  if (o.idle_timeout.count() < 0) fail("idle_timeout must be >= 0");
  // Checked here too so that the message names the call the user made.
  if (o.prespawn && o.min_threads == 0) fail("prespawn needs min_threads > 0 (the threads it starts)");
  if (o.history_size == 0) fail("history_size must be > 0");
  if (o.default_aloop.empty()) fail("default_aloop must name an aloop");
  const auto& p = o.processes;
  if (p.pool_size < 0 || p.reserve_normal < 0 || p.reserve_high < 0)
    fail("processes.pool_size and the process reserves must be >= 0");
  if (p.pool_size == 0 && (p.reserve_normal > 0 || p.reserve_high > 0))
    fail("process reserves need processes.pool_size > 0 (0 turns the process pool off)");
  if (p.time_limit.count() < 0 || p.soft_time_limit.count() < 0) fail("process time limits must be >= 0");
  if (p.time_limit.count() > 0 && p.soft_time_limit >= p.time_limit)
    fail("processes.soft_time_limit must be shorter than processes.time_limit (the soft one warns first)");
  if (p.prefetch < 0 || p.prefetch > 8)
    fail("processes.prefetch must be 0-8 (tasks a busy child holds ahead; 0 = none), got " +
         std::to_string(p.prefetch));
  return o;
}

}  // namespace atask::detail
