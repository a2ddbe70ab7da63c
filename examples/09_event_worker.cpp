// 09: EventWorker - runs when triggered. Triggers that arrive while a run is
// in progress coalesce into one more run; trigger(true) queues a run of its
// own. No polling: the executor starts within microseconds of trigger().
#include <atask/atask.hpp>

#include <cstdio>
#include <latch>

int main() {
  atask::Supervisor sv({.id = "event"});
  sv.start();

  std::latch flushed(2);
  int flushes = 0;
  auto flush = atask::event_worker(sv,
                                   [&](atask::WorkerContext& ctx) {
                                     std::printf("%s: flush #%d (task #%llu)\n", ctx.name.c_str(), ++flushes,
                                                 static_cast<unsigned long long>(ctx.task_id));
                                     flushed.count_down();
                                   },
                                   {.name = "flush", .priority = atask::Priority::high});
  flush->start();
  flush->trigger();
  flush->trigger(atask::TriggerMode::force);  // forced: its own run even if the first is still going
  flushed.wait();
  flush->stop();
  std::printf("%d flushes, worker is %s\n", flushes, std::string(atask::to_string(flush->state())).c_str());
  sv.stop();
}
