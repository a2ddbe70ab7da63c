// 11: collections - register startup functions with priorities and run them
// all, in the foreground (FunctionCollection) or in parallel on the pool
// (TaskCollection); every function gets its own result or error.
#include <atask/atask.hpp>
#include <atask/collection.hpp>

#include <cstdio>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;

int main() {
  // Foreground: lower priority values run first; one failure stops nothing.
  atask::FunctionCollection<int> startup;
  startup.add(
      "config", [] { return 1; }, 10);
  startup.add(
      "database", [] { return 2; }, 20);
  startup.add(
      "cache", []() -> int { throw std::runtime_error("cache server unreachable"); }, 30);
  startup.add("metrics", [] { return 4; });  // priority 100
  auto r = startup.run();
  for (const auto& e : r.entries) {
    if (e.ok())
      std::printf("  %-8s (priority %3d) -> %d\n", e.name.c_str(), e.priority, *e.value);
    else
      std::printf("  %-8s (priority %3d) failed: %s\n", e.name.c_str(), e.priority, e.error_message.c_str());
  }
  std::printf("startup all_ok = %s\n", r.all_ok ? "true" : "false");

  // On the pool: the functions run at the same time; run() waits for all,
  // at most 2 s, and reports a function that did not finish as a timeout.
  atask::Supervisor sv({.id = "coll", .pool_size = 4});
  sv.start();
  atask::TaskCollection<std::thread::id> probes(sv, {.priority = atask::Priority::high, .timeout = 2s});
  for (const char* name : {"disk", "network", "clock"})
    probes.add(name, [] { return std::this_thread::get_id(); });
  auto p = probes.run();
  for (const auto& e : p.entries)
    std::printf("  probe %-7s ran on a pool thread: %s\n", e.name.c_str(),
                e.ok() && *e.value != std::this_thread::get_id() ? "yes" : "no");
  std::printf("probes all_ok = %s\n", p.all_ok ? "true" : "false");
  sv.stop();
  return p.all_ok && !r.all_ok ? 0 : 1;
}
