// 14: steps (Celery's bootsteps). A service adds its own parts to the
// supervisor; each starts after what it depends on and stops before it.
#include <atask/atask.hpp>

#include <spdlog/spdlog.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <string>

int main() {
  auto log = spdlog::default_logger()->clone("steps");
  log->set_level(spdlog::level::debug);  // shows "boot order: loop -> ... -> cache"
  atask::Supervisor sv({.id = "svc", .pool_size = 2, .logger = log});

  std::mutex m;
  std::map<std::string, int> cache;
  // The cache fills itself with pool tasks, so it depends on "pool".
  sv.add_step({.name = "cache",
               .depends_on = {"config", "pool"},
               .start =
                   [&](atask::Supervisor& s) {
                     auto n = s.submit({}, [] { return 42; }).get();
                     std::lock_guard lk(m);
                     cache["answer"] = n;
                   },
               .stop =
                   [&](atask::Supervisor&) {
                     std::lock_guard lk(m);
                     std::printf("cache: flushing %zu entries\n", cache.size());
                   }});
  // Registered after "cache", started before it: the order is by dependency.
  sv.add_step({.name = "config",
               .depends_on = {},
               .start = [](atask::Supervisor&) { std::puts("config: loaded"); },
               .stop = [](atask::Supervisor&) { std::puts("config: closed"); }});

  sv.start();
  std::printf("boot order:");
  for (const auto& name : sv.boot_order()) std::printf(" %s", name.c_str());
  std::printf("\n");
  {
    std::lock_guard lk(m);
    std::printf("cache: answer = %d\n", cache["answer"]);
  }
  sv.stop();  // cache stops first, then config, then the built-in steps
}
