// 06: BackgroundWorker - an executor that runs again and again. Two ways to
// make one: subclass and override run(), or hand a callable to the
// background_worker() factory. Returning false stops the worker.
#include <atask/atask.hpp>

#include <cstdio>

using atask::WorkerContext;

// A subclass: owned through AutoStop, which stops it before its members go.
class Countdown : public atask::BackgroundWorker {
 public:
  using BasicWorker::BasicWorker;
  int left = 5;  // only the executor touches it: one run at a time

 protected:
  bool run(WorkerContext& ctx) override {
    std::printf("%s: %d\n", ctx.name.c_str(), left);
    return --left > 0;  // false: the worker stops itself
  }
};

int main() {
  atask::Supervisor sv({.id = "bg"});
  sv.start();

  atask::AutoStop<Countdown> countdown(sv, {.name = "countdown"});
  countdown.start();
  countdown.wait_stopped_for(std::chrono::seconds(10));

  int polls = 0;
  auto poller = atask::background_worker(
      sv, [&](WorkerContext& ctx) { return ++polls < 1000 && !ctx.stop_requested(); },
      {.name = "poller", .priority = atask::Priority::low});
  poller->start();
  poller->wait_stopped_for(std::chrono::seconds(10));
  std::printf("poller ran %d times, %llu runs counted\n", polls,
              static_cast<unsigned long long>(poller->info().runs));
  sv.stop();
}
