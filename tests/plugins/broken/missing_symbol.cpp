// A plugin that needs a function no program defines: dlopen refuses it.
#include <atask/plugins/plugin.hpp>

void atask_test_function_nobody_defines();

namespace {
void setup(atask::plugins::PluginContext& p) {
  atask_test_function_nobody_defines();
  p.task("missing.never", [] { return 3; });
}
}  // namespace

ATASK_PLUGIN(setup)
