// A plugin whose task ignores stop requests: the worker's cold stage has to
// abandon it (tests/cli/test_cli.cpp, exit code 4).
#include <atask/plugins/plugin.hpp>

#include <chrono>
#include <thread>

namespace {
void setup(atask::plugins::PluginContext& p) {
  p.describe("stubborn", "0.0.1", "A task that never looks at its stop request");
  p.task("stubborn.sleep", [](int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  });
}
}  // namespace

ATASK_PLUGIN(setup)
