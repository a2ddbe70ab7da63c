// Convention (c): dropping a result that owns something is a warning
// (-Wunused-result, on by default). Built with -DDROP=1, every call below
// drops its result and check_nodiscard.sh requires one warning per call;
// with -DDROP=0 (the control) every result is kept and it compiles with
// -Werror=unused-result.
#include <atask/background_task.hpp>
#include <atask/jobs.hpp>
#include <atask/locker.hpp>
#include <atask/process_worker.hpp>
#include <atask/timer.hpp>
#include <atask/workers.hpp>

#include <chrono>
#include <memory>

int answer() {
  return 42;
}
int square(int x) {
  return x * x;
}

struct Ticker : atask::BackgroundWorker {
  using BasicWorker::BasicWorker;
  bool run(atask::WorkerContext&) override { return true; }
};

void use(atask::Supervisor& sv, atask::Locker& lk, const atask::Job& job) {
  using namespace std::chrono_literals;
#if DROP
  // Every line drops one result: each must warn.
  atask::background_worker(sv, [] {});
  atask::event_worker(sv, [] {});
  atask::interval_worker(sv, [] {}, {.interval = 1s});
  atask::queue_worker<int>(sv, [](int) {});
  atask::background_worker(sv, atask::process(&answer), [](int) {});
  atask::event_worker(sv, atask::process(&answer), [](int) {});
  atask::interval_worker(sv, atask::process(&answer), [](int) {}, {.interval = 1s});
  atask::queue_worker<int>(sv, atask::process(&square), [](int) {});
  job.subscribe([] {});
  atask::background_task(sv, [] { return 1; });
  lk.wrap([] {});
  atask::after(sv, 1s, [] {});
  atask::make_worker<Ticker>(sv, {.name = "t"});
#else
  // The control: every result kept.
  auto a = atask::background_worker(sv, [] {});
  auto b = atask::event_worker(sv, [] {});
  auto c = atask::interval_worker(sv, [] {}, {.interval = 1s});
  auto d = atask::queue_worker<int>(sv, [](int) {});
  auto e = atask::background_worker(sv, atask::process(&answer), [](int) {});
  auto f = atask::event_worker(sv, atask::process(&answer), [](int) {});
  auto g = atask::interval_worker(sv, atask::process(&answer), [](int) {}, {.interval = 1s});
  auto h = atask::queue_worker<int>(sv, atask::process(&square), [](int) {});
  auto i = job.subscribe([] {});
  auto j = atask::background_task(sv, [] { return 1; });
  auto k = lk.wrap([] {});
  auto l = atask::after(sv, 1s, [] {});
  auto m = atask::make_worker<Ticker>(sv, {.name = "t"});
#endif
}
