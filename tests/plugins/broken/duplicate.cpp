// A plugin that registers a task of its own and "demo.add", which the
// example plugin demo_tasks registers first: refused as a whole.
#include <atask/plugins/plugin.hpp>

namespace {
void setup(atask::plugins::PluginContext& p) {
  p.task("duplicate.own", [] { return 2; });
  p.task("demo.add", [](int a, int b) { return a - b; });
}
}  // namespace

ATASK_PLUGIN(setup)
