// 10: IntervalWorker - runs on a schedule. `interval` is a fixed rate (the
// schedule does not drift with the executor's run time), `delay` a fixed gap
// after each run, `delay_before` a wait before the first run. trigger()
// runs it now. Options can be overridden at start (atasker's _interval=).
#include <atask/atask.hpp>

#include <chrono>
#include <cstdio>
#include <latch>

using namespace std::chrono_literals;

int main() {
  atask::Supervisor sv({.id = "interval"});
  sv.start();
  const auto t0 = std::chrono::steady_clock::now();
  auto ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };

  std::latch ticks(5);
  auto beat = atask::interval_worker(sv,
                                     [&] {
                                       std::printf("heartbeat at %6.1f ms\n", ms());
                                       ticks.count_down();
                                     },
                                     {.name = "heartbeat", .interval = 1s});
  beat->start({.interval = 20ms});  // this run: every 20 ms instead of every second
  ticks.wait();
  beat->stop();

  std::latch gaps(3);
  auto cleanup = atask::interval_worker(
      sv,
      [&] {
        std::printf("cleanup at %6.1f ms\n", ms());
        gaps.count_down();
      },
      {.name = "cleanup", .priority = atask::Priority::low, .delay = 15ms, .delay_before = 10ms});
  cleanup->start();
  cleanup->trigger();  // once now, then every 15 ms after a run ends
  gaps.wait();
  cleanup->stop();
  sv.stop();
}
