#pragma once
// The step graph: which step starts when (docs/steps.md).

#include <atask/supervisor/step.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace atask::detail {

struct StepSlot {
  Step step;
  bool builtin = false;
  StepState state = StepState::created;
};

/// Topological order: a step comes after everything it depends on; among the
/// steps that could come next, the one registered first (so built-ins, which
/// are registered first, lead, and the order is the same on every run).
/// OptionsError naming `call` for a missing dependency or a cycle.
std::vector<std::size_t> resolve(const std::vector<StepSlot>& steps, const std::string& call);

/// "a -> b -> c"
std::string joined(const std::vector<StepSlot>& steps, const std::vector<std::size_t>& order);

}  // namespace atask::detail
