// An example plugin: two tasks, one for a pool thread and one for a child of
// the process pool. Built by the project into <build>/plugins/, loaded by
// `atask worker --plugin-dir <build>/plugins` and by scripts/demo_cluster.sh.

#include <atask/plugins/plugin.hpp>

#include <boost/json/object.hpp>

#include <unistd.h>

namespace {

int add(int a, int b) {
  return a + b;
}

// Runs in a forked child: the pid shows it was not the worker itself.
boost::json::object square(long long x) {
  return {{"square", x * x}, {"pid", ::getpid()}};
}

void setup(atask::plugins::PluginContext& p) {
  p.describe("demo-tasks", "1.0.0", "Example tasks: a thread task and a process task");
  p.task("demo.add", add, {}, "Adds two integers", {{"a", "integer"}, {"b", "integer"}});
  p.task("demo.square", atask::process(square), {.queue = "default", .priority = atask::Priority::normal},
         "Squares an integer in a child process; returns the square and the child's pid", {{"x", "integer"}});
}

}  // namespace

ATASK_PLUGIN(setup)
