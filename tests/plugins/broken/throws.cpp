// A plugin whose entry point registers a task and then throws: the task
// must not reach the host's registry.
#include <atask/plugins/plugin.hpp>

#include <stdexcept>

namespace {
void setup(atask::plugins::PluginContext& p) {
  p.task("broken.first", [] { return 1; });
  throw std::runtime_error("no licence file at /etc/broken.lic");
}
}  // namespace

ATASK_PLUGIN(setup)
