// An example plugin: a task that reports its progress, offered as the job
// type "report" (POST /api/jobs/report streams its progress, whichever
// worker runs it), and a schedule for the beat.

#include <atask/distributed/consumer.hpp>
#include <atask/plugins/plugin.hpp>

#include <chrono>
#include <string>
#include <thread>

namespace {

// `steps` steps of `step_ms` each; stops early when asked to.
std::string report(int steps, int step_ms) {
  for (int i = 0; i < steps; ++i) {
    if (atask::this_task::stop_requested()) return "stopped at step " + std::to_string(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
    atask::distributed::report_progress(double(i + 1) / steps,
                                        "step " + std::to_string(i + 1) + " of " + std::to_string(steps));
  }
  return "report of " + std::to_string(steps) + " steps";
}

void setup(atask::plugins::PluginContext& p) {
  p.describe("demo-reports", "0.3.1", "Example job type with streamed progress, and a schedule");
  p.task("demo.report", report, {}, "Works in steps and reports each one",
         {{"steps", "integer"}, {"step_ms", "integer"}});
  p.job_type("report", "demo.report", {"steps", "step_ms"}, "A report built in steps");
  p.schedule({.name = "demo.tick", .every = std::chrono::seconds(10), .task = "demo.report", .args = {1, 1}});
}

}  // namespace

ATASK_PLUGIN(setup)
