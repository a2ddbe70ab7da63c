// TaskLimits: the checks of its values (the limits are enforced in Redis,
// src/distributed/lua/30_start.lua).

#include <atask/core/errors.hpp>
#include <atask/tasks/limits.hpp>

#include <string>

namespace atask {

void TaskLimits::check(const char* where) const {
  if (max_starts != 0 && per.count() <= 0)
    throw OptionsError(std::string(where) + " - limits.per must be positive when max_starts is set");
}

}  // namespace atask
