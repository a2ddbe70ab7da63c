// A plugin whose task ignores stop requests: the worker's cold stage has to
// abandon it (tests/cli/test_cli.cpp, exit code 4). Also two process tasks
// for the worker's --time-limit and --soft-time-limit: one that only a kill
// ends early, one that returns once the child is asked to stop.
#include <atask/core/task.hpp>
#include <atask/plugins/plugin.hpp>

#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

namespace {

// Sleeps `ms` in a child of the process pool whatever it is asked; its pid.
int nap(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ::getpid();
}

// Waits in a child of the process pool until it is asked to stop (or `ms`
// have passed): what it saw.
std::string patient(int ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
    if (atask::this_task::stop_requested()) return "asked to stop";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return "never asked";
}

void setup(atask::plugins::PluginContext& p) {
  p.describe("stubborn", "0.0.1", "A task that never looks at its stop request");
  p.task("stubborn.sleep", [](int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  });
  p.task("stubborn.nap", atask::process(nap));
  p.task("stubborn.patient", atask::process(patient));
}

}  // namespace

ATASK_PLUGIN(setup)
