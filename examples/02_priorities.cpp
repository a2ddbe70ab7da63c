// 02: priorities and reserved capacity. One slot for everyone, one reserved
// for high and above; critical never waits.
#include <atask/atask.hpp>

#include <cstdio>
#include <future>
#include <semaphore>

using atask::Priority;

int main() {
  atask::Supervisor sv({.id = "prio", .pool_size = 1, .reserve_high = 1});
  sv.start();
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  std::counting_semaphore<8> started(0);
  auto hold = [open, &started](const char* what) {
    std::printf("  started: %s\n", what);
    started.release();
    open.wait();
  };
  auto low = sv.submit({.priority = Priority::low}, hold, "low (takes the one common slot)");
  started.acquire();
  auto low2 = sv.submit({.priority = Priority::low}, hold, "second low (waits for the common slot)");
  auto high = sv.submit({.priority = Priority::high}, hold, "high (uses the reserved slot)");
  started.acquire();
  auto crit =
      sv.submit({.priority = Priority::critical}, hold, "critical (an extra thread, past every limit)");
  started.acquire();
  auto info = sv.info().pool;
  std::printf("running %d, queued %d: the second low task waits for the common slot\n", info.running_total,
              info.queued_total);
  gate.set_value();
  for (auto* t : {&low, &low2, &high, &crit}) t->get();
  sv.stop();
}
