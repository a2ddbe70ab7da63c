#include <atask/workers.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"
#include "supervisor/access.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using atask::Priority;
using atask::WorkerContext;
using atask::WorkerState;

using namespace test;

namespace {

using clock_type = std::chrono::steady_clock;

// Timestamps of executor calls.
class Stamps {
 public:
  void add() {
    std::lock_guard lk(m_);
    t_.push_back(clock_type::now());
    cv_.notify_all();
  }
  bool wait_for_count(std::size_t n, std::chrono::milliseconds d = patience) {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, d, [&] { return t_.size() >= n; });
  }
  std::vector<clock_type::time_point> get() const {
    std::lock_guard lk(m_);
    return t_;
  }

 private:
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::vector<clock_type::time_point> t_;
};

// Holds an executor call until the test opens it: the test knows the call
// has begun (entered) and decides when it ends; opened at scope exit too.
struct Gate {
  Event entered, release;
  OpenOnExit open{&release};
  void hold() {
    entered.set();
    REQUIRE(release.wait_for());
  }
};

// A subclass with every hook, recording what happened.
class Recorder : public atask::EventWorker {
 public:
  using BasicWorker::BasicWorker;
  std::vector<std::string> log() {
    std::lock_guard lk(lm_);
    return log_;
  }
  Counter runs;

 protected:
  bool run(WorkerContext&) override {
    note("run");
    runs.bump();
    return true;
  }
  void before_start() override { note("before_start"); }
  void after_start() override { note("after_start"); }
  void before_stop() override { note("before_stop"); }
  void after_stop() override { note("after_stop"); }

 private:
  void note(const char* s) {
    std::lock_guard lk(lm_);
    log_.push_back(s);
  }
  std::mutex lm_;
  std::vector<std::string> log_;
};

}  // namespace

TEST_SUITE("workers") {
  // -- background ------------------------------------------------------------------------
  TEST_CASE("a background worker runs its executor again and again until it returns false") {
    StartedSupervisor sv(options("bw"));
    std::atomic<int> n{0};
    auto w = atask::background_worker(sv, [&](WorkerContext&) { return ++n < 100; });
    CHECK(w->start());
    REQUIRE(w->wait_stopped_for(patience));
    CHECK(n.load() == 100);
    CHECK(w->info().runs == 100);
    CHECK(w->is_stopped());
  }

  TEST_CASE("a background worker stops on stop() and its executor sees the stop token") {
    StartedSupervisor sv(options("bw2"));
    Event inside, saw_stop;
    auto w = atask::background_worker(sv, [&](WorkerContext& ctx) {
      inside.set();
      Event stopped;
      std::stop_callback cb(ctx.stop_token, [&] { stopped.set(); });
      if (stopped.wait_for()) saw_stop.set();
    });
    w->start();
    REQUIRE(inside.wait_for());
    CHECK(w->is_active());
    w->stop();
    CHECK(saw_stop.is_set());
    CHECK(w->is_stopped());
    CHECK_FALSE(w->is_started());
  }

  TEST_CASE("an async worker runs its coroutine executor on the named aloop's thread") {
    StartedSupervisor sv(options("aw"));
    auto& loop = sv.create_aloop("work");
    std::atomic<int> n{0};
    std::atomic<bool> wrong_thread{false};
    auto w = atask::background_worker(sv,
                                      [&](WorkerContext&) -> asio::awaitable<bool> {
                                        if (std::this_thread::get_id() != loop.thread_id())
                                          wrong_thread = true;
                                        co_return ++n < 10;
                                      },
                                      {.aloop = "work"});
    static_assert(std::is_same_v<decltype(w), std::unique_ptr<atask::AsyncWorker>>);
    CHECK(w->coroutine());
    w->start();
    REQUIRE(w->wait_stopped_for(patience));
    CHECK(n.load() == 10);
    CHECK_FALSE(wrong_thread.load());
  }

  TEST_CASE("a coroutine executor's wait is canceled when its worker stops and that is no error") {
    StartedSupervisor sv(options("aw2"));
    Event waiting;
    std::atomic<bool> aborted{false};
    auto w = atask::background_worker(sv, [&](WorkerContext&) -> asio::awaitable<void> {
      asio::steady_timer t(co_await asio::this_coro::executor, 1h);
      waiting.set();
      try {
        co_await t.async_wait(asio::use_awaitable);
      } catch (const boost::system::system_error& e) {
        aborted = e.code() == asio::error::operation_aborted;
        throw;
      }
    });
    w->start();
    REQUIRE(waiting.wait_for());
    w->stop();
    CHECK(aborted.load());
    CHECK(w->info().errors == 0);
  }

  // -- queue -----------------------------------------------------------------------------
  TEST_CASE("a queue worker sums 2 + 3 + 4 = 9") {
    StartedSupervisor sv(options("qw"));
    int sum = 0;  // one executor call at a time: no lock needed
    auto w = atask::queue_worker<int>(sv, [&](int x) { sum += x; });
    w->start();
    w->put(2);
    w->put(3);
    w->put(4);
    w->stop();  // drains
    CHECK(sum == 9);
    CHECK(w->info().runs == 3);
  }

  TEST_CASE("a queue worker takes items in FIFO order by default") {
    StartedSupervisor sv(options("qfifo"));
    std::vector<int> seen;
    auto w = atask::queue_worker<int>(sv, [&](int x) { seen.push_back(x); });
    w->start();
    for (int i : {5, 1, 4, 2, 3}) w->put(i);
    w->stop();
    CHECK(seen == std::vector<int>{5, 1, 4, 2, 3});
  }

  TEST_CASE("a priority queue worker takes the smallest item first and equals in FIFO order") {
    StartedSupervisor sv(options("qprio"));
    Gate gate;
    std::vector<std::pair<int, int>> seen;
    struct ByFirst {
      bool operator()(const std::pair<int, int>& a, const std::pair<int, int>& b) const {
        return a.first < b.first;
      }
    };
    auto w = atask::queue_worker<std::pair<int, int>, ByFirst>(sv,
                                                               [&](std::pair<int, int> x) {
                                                                 if (x.first == 0) {
                                                                   gate.hold();
                                                                 } else {
                                                                   seen.push_back(x);
                                                                 }
                                                               },
                                                               {.order = atask::QueueOrder::priority});
    w->start();
    w->put({0, 0});  // holds the executor while the others queue up
    REQUIRE(gate.entered.wait_for());
    for (auto p : std::vector<std::pair<int, int>>{{5, 1}, {1, 1}, {3, 1}, {1, 2}, {2, 1}, {1, 3}}) w->put(p);
    CHECK(w->size() == 6);
    gate.release.set();
    w->stop();
    CHECK(seen == std::vector<std::pair<int, int>>{{1, 1}, {1, 2}, {1, 3}, {2, 1}, {3, 1}, {5, 1}});
  }

  TEST_CASE("a priority order on items that can not be ordered is an options error") {
    atask::Supervisor sv(options("qbad"));
    struct Blob {};
    CHECK(contains(what_of<atask::OptionsError>([&] {
                     auto w =
                         atask::queue_worker<Blob>(sv, [](Blob) {}, {.order = atask::QueueOrder::priority});
                   }),
                   "priority order"));
  }

  TEST_CASE("a full queue pushes back: try_put fails and put_for times out and put waits for room") {
    StartedSupervisor sv(options("qcap"));
    Gate gate;
    Counter done;
    auto w = atask::queue_worker<int>(sv,
                                      [&](int x) {
                                        if (x == 0) {
                                          gate.hold();
                                        }
                                        done.bump();
                                      },
                                      {.capacity = 2});
    w->start();
    w->put(0);
    REQUIRE(gate.entered.wait_for());
    w->put(1);
    w->put(2);
    CHECK(w->size() == 2);
    int x = 3;
    CHECK_FALSE(w->try_put(x));
    CHECK_FALSE(w->put_for(x, 20ms));
    CHECK(x == 3);  // left untouched
    // A blocked put() completes once the executor frees a slot.
    auto f = std::async(std::launch::async, [&] { w->put(3); });
    gate.release.set();
    wait_or_abort(f, "QueueWorker::put() on a full queue");
    REQUIRE(done.wait_for_at_least(4));
    w->stop();
    CHECK(done.value() == 4);
  }

  TEST_CASE("async_put waits for room without blocking a thread") {
    StartedSupervisor sv(options("qasync"));
    Gate gate;
    Counter done;
    auto w = atask::queue_worker<int>(sv,
                                      [&](int x) {
                                        if (x == 0) {
                                          gate.hold();
                                        }
                                        done.bump();
                                      },
                                      {.capacity = 1});
    w->start();
    w->put(0);
    REQUIRE(gate.entered.wait_for());
    w->put(1);  // full now
    auto& loop = sv.default_aloop();
    std::atomic<int> put_done{0};
    auto fut = asio::co_spawn(
        loop.get_executor(),
        [&]() -> asio::awaitable<void> {
          co_await w->async_put(2, asio::use_awaitable);
          ++put_done;
        },
        asio::use_future);
    // The aloop is free meanwhile: another coroutine runs on it.
    auto probe = asio::co_spawn(
        loop.get_executor(), []() -> asio::awaitable<int> { co_return 7; }, asio::use_future);
    REQUIRE(probe.wait_for(patience) == std::future_status::ready);
    CHECK(probe.get() == 7);
    CHECK(put_done.load() == 0);
    gate.release.set();
    REQUIRE(fut.wait_for(patience) == std::future_status::ready);
    fut.get();
    REQUIRE(done.wait_for_at_least(3));
    w->stop();
  }

  TEST_CASE("stop hands back the queued items when the worker is set to hand back") {
    StartedSupervisor sv(options("qhand"));
    Gate gate;
    std::vector<int> handed;
    std::vector<int> processed;
    auto w = atask::queue_worker<int>(sv,
                                      [&](int x) {
                                        processed.push_back(x);
                                        if (x == 0) {
                                          gate.hold();
                                        }
                                      },
                                      {.on_stop = atask::QueueStop::hand_back,
                                       .on_hand_back = [&](std::vector<int> items) { handed = items; }});
    w->start();
    w->put(0);
    REQUIRE(gate.entered.wait_for());
    for (int i : {1, 2, 3}) w->put(i);
    w->request_stop();
    gate.release.set();
    REQUIRE(w->wait_stopped_for(patience));
    CHECK(processed == std::vector<int>{0});
    CHECK(handed == std::vector<int>{1, 2, 3});
  }

  TEST_CASE("handed-back items wait in take_unprocessed when there is no callback") {
    StartedSupervisor sv(options("qtake"));
    Gate gate;
    auto w = atask::queue_worker<std::string>(sv, [&](std::string s) {
      if (s == "hold") {
        gate.hold();
      }
      return false;  // stop after this item: the rest is handed back
    });
    w->start();
    w->put("hold");
    REQUIRE(gate.entered.wait_for());
    w->put("a");
    w->put("b");
    gate.release.set();
    REQUIRE(w->wait_stopped_for(patience));
    CHECK(w->take_unprocessed() == std::vector<std::string>{"a", "b"});
    CHECK(w->take_unprocessed().empty());
  }

  TEST_CASE("put before start and after stop is a lifecycle error and the item is not queued") {
    StartedSupervisor sv(options("qlife"));
    auto w = atask::queue_worker<int>(sv, [](int) {});
    CHECK(contains(what_of<atask::LifecycleError>([&] { w->put(1); }), "is not active"));
    w->start();
    w->put(1);
    w->stop();
    CHECK(contains(what_of<atask::LifecycleError>([&] { w->put(2); }), "QueueWorker::put()"));
    int x = 5;
    CHECK_THROWS_AS(w->try_put(x), atask::LifecycleError);
    CHECK(w->size() == 0);
  }

  TEST_CASE("an async queue worker runs its coroutine executor for each item on the aloop") {
    StartedSupervisor sv(options("aq"));
    auto& loop = sv.create_aloop("q");
    std::atomic<int> sum{0};
    std::atomic<bool> wrong_thread{false};
    auto w = atask::queue_worker<int>(sv,
                                      [&](int x, WorkerContext&) -> asio::awaitable<void> {
                                        if (!loop.on_thread()) wrong_thread = true;
                                        asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
                                        co_await t.async_wait(asio::use_awaitable);
                                        sum += x;
                                      },
                                      {.aloop = "q"});
    w->start();
    for (int i = 1; i <= 10; ++i) w->put(i);
    w->stop();
    CHECK(sum.load() == 55);
    CHECK_FALSE(wrong_thread.load());
  }

  // -- event -----------------------------------------------------------------------------
  TEST_CASE("an event worker triggered twice runs twice") {
    StartedSupervisor sv(options("ew"));
    Counter runs;
    auto w = atask::event_worker(sv, [&] { runs.bump(); });
    w->start();
    CHECK(w->trigger());
    REQUIRE(runs.wait_for_at_least(1));
    CHECK(w->trigger());
    REQUIRE(runs.wait_for_at_least(2));
    w->stop();
    CHECK(runs.value() == 2);
  }

  TEST_CASE("triggers during a run coalesce into one more run and forced triggers queue their own") {
    StartedSupervisor sv(options("ecoal"));
    Gate gate;
    Counter runs;
    auto w = atask::event_worker(sv, [&] {
      if (runs.bump() == 1) gate.hold();
    });
    w->start();
    w->trigger();
    REQUIRE(gate.entered.wait_for());
    for (int i = 0; i < 5; ++i) w->trigger();
    CHECK(w->info().pending_runs == 1);
    w->trigger(atask::TriggerMode::force);
    w->trigger(atask::TriggerMode::force);
    CHECK(w->info().pending_runs == 3);
    gate.release.set();
    REQUIRE(runs.wait_for_at_least(4));
    w->stop();
    CHECK(runs.value() == 4);
    CHECK(w->info().pending_runs == 0);
  }

  TEST_CASE("trigger on a worker that is not active is a no-op that returns false") {
    StartedSupervisor sv(options("eoff"));
    Counter runs;
    auto w = atask::event_worker(sv, [&] { runs.bump(); });
    CHECK_FALSE(w->trigger());
    w->start();
    w->stop();
    CHECK_FALSE(w->trigger());
    CHECK(runs.value() == 0);
  }

  TEST_CASE("an async event worker runs on the default aloop") {
    StartedSupervisor sv(options("aew"));
    Counter runs;
    std::atomic<bool> wrong_thread{false};
    auto w = atask::event_worker(sv, [&]() -> asio::awaitable<void> {
      if (!sv.default_aloop().on_thread()) wrong_thread = true;
      runs.bump();
      co_return;
    });
    w->start();
    w->trigger();
    REQUIRE(runs.wait_for_at_least(1));
    w->trigger();
    REQUIRE(runs.wait_for_at_least(2));
    w->stop();
    CHECK_FALSE(wrong_thread.load());
  }

  // -- interval --------------------------------------------------------------------------
  TEST_CASE("an interval worker at 20 ms runs about 5 times in 100 ms") {
    StartedSupervisor sv(options("iw"));
    Stamps s;
    const auto t0 = clock_type::now();
    auto w = atask::interval_worker(sv, [&] { s.add(); }, {.interval = 20ms});
    w->start();
    REQUIRE(s.wait_for_count(6));
    w->stop();
    auto t = s.get();
    // Fixed rate: the sixth run is due at 100 ms and never runs early;
    // the upper bound is loose (a shared, noisy machine).
    CHECK(t[5] - t0 >= 99ms);
    CHECK(t[5] - t0 < 2s);
    for (std::size_t k = 0; k < 6; ++k) CHECK(t[k] - t0 >= 20ms * k);
  }

  TEST_CASE("an interval worker with a delay waits that long after each run") {
    StartedSupervisor sv(options("idelay"));
    std::mutex m;
    std::vector<std::pair<clock_type::time_point, clock_type::time_point>> runs;  // start, end
    Counter n;
    auto w = atask::interval_worker(sv,
                                    [&] {
                                      auto b = clock_type::now();
                                      std::this_thread::sleep_for(5ms);  // the executor's own work
                                      {
                                        std::lock_guard lk(m);
                                        runs.emplace_back(b, clock_type::now());
                                      }
                                      n.bump();
                                    },
                                    {.delay = 15ms});
    w->start();
    REQUIRE(n.wait_for_at_least(4));
    w->stop();
    std::lock_guard lk(m);
    for (std::size_t k = 1; k < runs.size(); ++k) CHECK(runs[k].first - runs[k - 1].second >= 15ms);
  }

  TEST_CASE("delay_before holds the first run back") {
    StartedSupervisor sv(options("ibefore"));
    Stamps s;
    const auto t0 = clock_type::now();
    auto w = atask::interval_worker(sv, [&] { s.add(); }, {.interval = 10ms, .delay_before = 40ms});
    w->start();
    REQUIRE(s.wait_for_count(2));
    w->stop();
    auto t = s.get();
    CHECK(t[0] - t0 >= 40ms);
    CHECK(t[1] - t0 >= 50ms);
  }

  TEST_CASE("trigger runs an interval worker now without waiting for its interval") {
    StartedSupervisor sv(options("itrig"));
    Counter runs;
    auto w = atask::interval_worker(sv, [&] { runs.bump(); }, {.interval = 1h, .delay_before = 1h});
    w->start();
    CHECK(runs.value() == 0);
    w->trigger();
    REQUIRE(runs.wait_for_at_least(1));
    w->trigger();
    REQUIRE(runs.wait_for_at_least(2));
    w->stop();
  }

  TEST_CASE("bad interval options are options errors with a clear message") {
    atask::Supervisor sv(options("ibad"));
    auto f = [] {};
    CHECK(contains(
        what_of<atask::OptionsError>([&] { (void)atask::interval_worker(sv, f, {.interval = 0ms}); }),
        "interval must be > 0"));
    CHECK(contains(
        what_of<atask::OptionsError>([&] { (void)atask::interval_worker(sv, f, {.interval = -5ms}); }),
        "interval must be > 0"));
    CHECK(contains(what_of<atask::OptionsError>(
                       [&] { (void)atask::interval_worker(sv, f, {.interval = 10ms, .delay = 10ms}); }),
                   "can not be used together"));
    CHECK(
        contains(what_of<atask::OptionsError>([&] { (void)atask::interval_worker(sv, f, {.delay = -1ms}); }),
                 "delay must be >= 0"));
    CHECK(contains(what_of<atask::OptionsError>(
                       [&] { (void)atask::interval_worker(sv, f, {.interval = 1s, .delay_before = -1ms}); }),
                   "IntervalWorker::IntervalWorker()"));
  }

  TEST_CASE("start overrides the interval and the priority and the name for one active period") {
    StartedSupervisor sv(options("iover"));
    Counter runs;
    auto w = atask::interval_worker(sv, [&] { runs.bump(); },
                                    {.name = "tick", .interval = 1h, .delay_before = 1h});
    CHECK(w->start({.name = "fast", .priority = Priority::high, .interval = 5ms, .delay_before = 0ms}));
    CHECK(w->name() == "fast");
    CHECK(w->priority() == Priority::high);
    REQUIRE(runs.wait_for_at_least(3));
    w->stop();
    CHECK_THROWS_AS(w->start({.interval = 5ms, .delay = 5ms}), atask::OptionsError);
    auto e = atask::event_worker(sv, [] {});
    CHECK(
        contains(what_of<atask::OptionsError>([&] { e->start({.interval = 5ms}); }), "for interval workers"));
    // Back to the constructed options.
    CHECK(w->start());
    CHECK(w->name() == "tick");
    CHECK(w->priority() == Priority::normal);
    w->stop();
  }

  // -- lifecycle -------------------------------------------------------------------------
  TEST_CASE("start twice returns false and start on a stopped supervisor is a lifecycle error") {
    atask::Supervisor sv(options("life"));
    auto w = atask::event_worker(sv, [] {});
    CHECK(contains(what_of<atask::LifecycleError>([&] { w->start(); }), "is not running"));
    sv.start();
    CHECK(w->start());
    CHECK_FALSE(w->start());
    w->stop();
    w->stop();  // a no-op
    CHECK(w->is_stopped());
    sv.stop();
    CHECK_THROWS_AS(w->start(), atask::LifecycleError);
  }

  TEST_CASE("a failed start leaves the worker stopped with its name") {
    StartedSupervisor sv(options("badstart"));
    auto w = atask::event_worker(sv, []() -> asio::awaitable<void> { co_return; },
                                 {.name = "net-worker", .aloop = "no-such-loop"});
    CHECK(contains(what_of<atask::OptionsError>([&] { w->start({.name = "renamed"}); }), "no aloop named"));
    CHECK(w->is_stopped());
    CHECK(w->name() == "net-worker");
    CHECK(sv.workers().at(0).name == "net-worker");
    sv.create_aloop("no-such-loop");
    CHECK(w->start());

    struct Refuser : atask::EventWorker {
      using BasicWorker::BasicWorker;
      bool run(WorkerContext&) override { return true; }
      void before_start() override { throw std::runtime_error("not today"); }
    };
    atask::AutoStop<Refuser> r(sv, atask::WorkerOptions{.name = "refuser"});
    CHECK(what_of<std::runtime_error>([&] { r.start(); }) == "not today");
    CHECK(r.is_stopped());
    CHECK_FALSE(r.trigger());
  }

  TEST_CASE("hooks run in order around start and stop and restart runs them again") {
    StartedSupervisor sv(options("hooks"));
    atask::AutoStop<Recorder> w(sv, atask::WorkerOptions{.name = "rec"});
    w.start();
    w.trigger();
    REQUIRE(w.runs.wait_for_at_least(1));
    w.restart();
    w.trigger();
    REQUIRE(w.runs.wait_for_at_least(2));
    w.stop();
    CHECK(w.log() == std::vector<std::string>{"before_start", "after_start", "run", "before_stop",
                                              "after_stop", "before_start", "after_start", "run",
                                              "before_stop", "after_stop"});
  }

  TEST_CASE("make_worker owns a subclass and stops it before destroying it") {
    StartedSupervisor sv(options("make"));
    auto w = atask::make_worker<Recorder>(sv, atask::WorkerOptions{});
    w->start();
    w->trigger();
    REQUIRE(w->runs.wait_for_at_least(1));
    w.reset();  // stops (with hooks), then destroys
    CHECK(sv.workers().empty());
  }

  TEST_CASE("a worker destroyed while its executor runs asks it to stop and waits for it") {
    StartedSupervisor sv(options("destroy"));
    Event inside;
    std::atomic<bool> returned{false};
    auto w = atask::background_worker(sv, [&](WorkerContext& ctx) {
      inside.set();
      Event stop;
      std::stop_callback cb(ctx.stop_token, [&] { stop.set(); });
      REQUIRE(stop.wait_for());
      returned = true;
      return false;
    });
    w->start();
    REQUIRE(inside.wait_for());
    w.reset();
    CHECK(returned.load());
  }

  TEST_CASE("an executor that throws goes to on_error and the worker goes on") {
    StartedSupervisor sv(options("err"));
    std::mutex m;
    std::vector<std::string> errors;
    Counter runs;
    auto w = atask::event_worker(sv,
                                 [&](WorkerContext&) {
                                   if (runs.bump() % 2 == 1) throw std::runtime_error("odd run");
                                 },
                                 {.name = "flaky", .on_error = [&](const atask::WorkerError& e) {
                                    std::lock_guard lk(m);
                                    errors.push_back(e.worker + ": " + e.message);
                                  }});
    w->start();
    for (int i = 1; i <= 4; ++i) {
      w->trigger();
      REQUIRE(runs.wait_for_at_least(i));
    }
    w->stop();
    CHECK(w->info().errors == 2);
    CHECK(w->info().runs == 4);
    std::lock_guard lk(m);
    REQUIRE(errors.size() == 2);
    CHECK(contains(errors[0], "flaky: "));
    CHECK(contains(errors[0], "odd run"));
  }

  TEST_CASE("an executor that throws every time keeps its worker going unless stop_after_errors is set") {
    StartedSupervisor sv(options("always"));
    Counter runs;
    auto w = atask::background_worker(sv, [&](WorkerContext&) -> bool {
      runs.bump();
      throw std::runtime_error("always");
    });
    w->start();
    REQUIRE(runs.wait_for_at_least(50));
    CHECK(w->is_active());
    w->stop();
    CHECK(w->info().errors == w->info().runs);

    Counter runs2;
    auto w2 = atask::background_worker(sv,
                                       [&](WorkerContext&) -> bool {
                                         runs2.bump();
                                         throw std::runtime_error("always");
                                       },
                                       {.stop_after_errors = 3});
    w2->start();
    REQUIRE(w2->wait_stopped_for(patience));
    CHECK(runs2.value() == 3);
  }

  TEST_CASE("stop() from inside the worker's own executor does not deadlock") {
    StartedSupervisor sv(options("selfstop"));
    std::atomic<bool> was_active_after{false};
    auto w = atask::background_worker(sv, [&](WorkerContext& ctx) {
      ctx.worker.stop();  // cannot wait for itself: returns at once
      was_active_after = ctx.worker.is_active();
      return true;
    });
    w->start();
    REQUIRE(w->wait_stopped_for(patience));
    CHECK_FALSE(was_active_after.load());
    CHECK(w->info().runs == 1);
  }

  TEST_CASE("restart() from inside the executor starts the worker again once the executor returns") {
    StartedSupervisor sv(options("selfrestart"));
    struct SelfRestarter : atask::EventWorker {
      using BasicWorker::BasicWorker;
      Counter runs, starts;
      bool run(WorkerContext&) override {
        if (runs.bump() == 1) restart();
        return true;
      }
      void after_start() override { starts.bump(); }
    };
    auto w = atask::make_worker<SelfRestarter>(sv, atask::WorkerOptions{});
    w->start();
    w->trigger();
    REQUIRE(w->runs.wait_for_at_least(1));
    REQUIRE(w->starts.wait_for_at_least(2));
    CHECK(w->trigger());
    REQUIRE(w->runs.wait_for_at_least(2));
    w->stop();
    CHECK(w->starts.value() == 2);
  }

  TEST_CASE("the executor gets its worker and its name and its task id and a stop token") {
    StartedSupervisor sv(options("ctx"));
    std::promise<std::tuple<std::string, std::uint64_t, bool, atask::Worker*>> got;
    auto w = atask::event_worker(
        sv,
        [&](WorkerContext& ctx) {
          got.set_value({ctx.name, ctx.task_id, ctx.stop_token.stop_possible(), &ctx.worker});
          return false;
        },
        {.name = "ctx-worker"});
    w->start();
    w->trigger();
    auto f = got.get_future();
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    auto [name, id, possible, worker] = f.get();
    CHECK(name == "ctx-worker");
    CHECK(worker == w.get());
    CHECK(possible);
    REQUIRE(w->wait_stopped_for(patience));
    bool found = false;
    for (auto& t : sv.tasks())
      if (t.id == id) found = t.name == "ctx-worker";
    CHECK(found);
  }

  TEST_CASE("a coroutine worker runs the calls of one active period in one task") {
    StartedSupervisor sv(options("host"));
    std::mutex m;
    std::vector<std::uint64_t> ids;
    Counter runs;
    auto w = atask::event_worker(sv,
                                 [&](WorkerContext& ctx) -> boost::asio::awaitable<void> {
                                   {
                                     std::lock_guard lk(m);
                                     ids.push_back(ctx.task_id);
                                   }
                                   runs.bump();
                                   co_return;
                                 },
                                 {.name = "host"});
    w->start();
    for (int i = 1; i <= 3; ++i) {
      REQUIRE(w->trigger());
      REQUIRE(runs.wait_for_at_least(i));
    }
    w->stop();
    REQUIRE(w->start());
    REQUIRE(w->trigger());
    REQUIRE(runs.wait_for_at_least(4));
    w->stop();
    std::lock_guard lk(m);
    REQUIRE(ids.size() == 4);
    CHECK(ids[0] != 0);
    CHECK(ids[1] == ids[0]);
    CHECK(ids[2] == ids[0]);
    CHECK(ids[3] != ids[0]);  // a new period, a new host
    CHECK(w->info().runs == 4);
  }

  TEST_CASE("a coroutine worker whose aloop is stopped while it waits stops cleanly") {
    StartedSupervisor sv(options("host-aloop"));
    sv.create_aloop("side");
    Counter runs;
    auto w = atask::event_worker(sv,
                                 [&]() -> boost::asio::awaitable<void> {
                                   runs.bump();
                                   co_return;
                                 },
                                 {.name = "side-worker", .aloop = "side"});
    w->start();
    REQUIRE(w->trigger());
    REQUIRE(runs.wait_for_at_least(1));
    sv.stop_aloop("side");  // destroys the waiting host with its aloop
    w->trigger();           // no aloop to run on: the worker stops
    CHECK(w->wait_stopped_for(patience));
    CHECK(runs.value() == 1);
  }

  TEST_CASE("worker names default to something readable and unique and a taken name is an options error") {
    atask::Supervisor sv(options("names"));
    auto a = atask::event_worker(sv, [] {});
    auto b = atask::event_worker(sv, [] {});
    CHECK(a->name().rfind("event-", 0) == 0);
    CHECK(a->name() != b->name());
    auto c = atask::queue_worker<int>(sv, [](int) {}, {.name = "jobs"});
    CHECK(contains(
        what_of<atask::OptionsError>([&] { (void)atask::event_worker(sv, [] {}, {.name = "jobs"}); }),
        "'jobs' already exists"));
    auto infos = sv.workers();
    REQUIRE(infos.size() == 3);
    CHECK(infos[2].name == "jobs");
    CHECK(infos[2].kind == atask::WorkerKind::queue);
  }

  TEST_CASE("the supervisor stops every worker when it stops") {
    StartedSupervisor sv(options("svstop"));
    Event inside;
    auto bg = atask::background_worker(sv, [&](WorkerContext& ctx) {
      inside.set();
      Event stop;
      std::stop_callback cb(ctx.stop_token, [&] { stop.set(); });
      REQUIRE(stop.wait_for());
    });
    auto iw = atask::interval_worker(sv, [] {}, {.interval = 5ms});
    int sum = 0;
    auto q = atask::queue_worker<int>(sv, [&](int x) { sum += x; });
    bg->start();
    iw->start();
    q->start();
    for (int i = 1; i <= 100; ++i) q->put(i);
    REQUIRE(inside.wait_for());
    auto r = sv.stop();
    CHECK(r.completed);
    CHECK(bg->is_stopped());
    CHECK(iw->is_stopped());
    CHECK(q->is_stopped());
    CHECK(sum == 5050);  // the queue drained before the pool closed
  }

  TEST_CASE("stop hooks may call back into the supervisor while it stops its workers") {
    StartedSupervisor sv(options("hookcall"));
    struct Asker : atask::EventWorker {
      using BasicWorker::BasicWorker;
      std::size_t seen = 0;
      bool run(WorkerContext&) override { return true; }
      void before_stop() override { seen = supervisor().workers().size(); }
    };
    atask::AutoStop<Asker> a(sv, atask::WorkerOptions{.name = "a"});
    atask::AutoStop<Asker> b(sv, atask::WorkerOptions{.name = "b"});
    a.start();
    b.start();
    auto f = std::async(std::launch::async, [&] { return sv.stop(); });
    CHECK(wait_or_abort(f, "Supervisor::stop()").completed);
    CHECK(a.seen == 2);
    CHECK(b.seen == 2);
  }

  TEST_CASE("a worker that outlives its supervisor is stopped and refuses to start") {
    auto sv = std::make_unique<atask::Supervisor>(options("gone"));
    sv->start();
    auto w = atask::interval_worker(*sv, [] {}, {.interval = 1ms});
    w->start();
    sv.reset();
    CHECK(w->is_stopped());
    CHECK(contains(what_of<atask::LifecycleError>([&] { w->start(); }), "is gone"));
  }
  // -- issue 10: friction a new user hit -------------------------------------------------
  TEST_CASE("interval and queue options take the common fields first in the order of WorkerOptions") {
    // Designated initializers name fields in declaration order: these lines
    // compile only when name, priority, aloop, on_error and stop_after_errors
    // come first, in that order, and the fields of the kind after them.
    StartedSupervisor sv(options("natural"));
    Counter errors;
    const atask::IntervalOptions io{.name = "beat",
                                    .priority = Priority::high,
                                    .aloop = {},
                                    .on_error = [&](const atask::WorkerError&) { errors.bump(); },
                                    .stop_after_errors = 3,
                                    .interval = 1h,
                                    .delay = {},
                                    .delay_before = 1h};
    const atask::QueueOptions<int> qo{.name = "ingest",
                                      .priority = Priority::low,
                                      .aloop = {},
                                      .on_error = {},
                                      .stop_after_errors = 2,
                                      .capacity = 7,
                                      .order = atask::QueueOrder::priority,
                                      .on_stop = atask::QueueStop::hand_back,
                                      .on_hand_back = {}};
    auto beat = atask::interval_worker(
        sv, [] {}, io);
    auto tick = atask::interval_worker(sv, [] {}, {.name = "tick", .interval = 1h});
    auto ingest = atask::queue_worker<int>(
        sv, [](int) {}, qo);
    auto adder = atask::queue_worker<int>(sv, [](int) {}, {.name = "adder", .capacity = 3});
    CHECK(beat->name() == "beat");
    CHECK(beat->priority() == Priority::high);
    CHECK(tick->name() == "tick");
    CHECK(ingest->name() == "ingest");
    CHECK(ingest->priority() == Priority::low);
    CHECK(ingest->capacity() == 7);
    CHECK(adder->name() == "adder");
    CHECK(adder->capacity() == 3);
  }

  TEST_CASE("an aloop on a blocking executor is an options error naming the worker and the aloop") {
    StartedSupervisor sv(options("blockaloop"));
    sv.create_aloop("io");
    auto at_construction = [&](auto make) { return what_of<atask::OptionsError>(make); };
    const auto bg =
        at_construction([&] { (void)atask::background_worker(sv, [] {}, {.name = "bg", .aloop = "io"}); });
    CHECK(contains(bg, "BackgroundWorker::BackgroundWorker()"));
    CHECK(contains(bg, "worker 'bg'"));
    CHECK(contains(bg, ".aloop = 'io'"));
    CHECK(contains(bg, "runs on the pool"));
    CHECK(contains(
        at_construction([&] { (void)atask::event_worker(sv, [] {}, {.name = "ev", .aloop = "io"}); }),
        "worker 'ev': .aloop = 'io'"));
    CHECK(contains(at_construction([&] {
                     (void)atask::interval_worker(sv, [] {}, {.name = "iv", .aloop = "io", .interval = 1h});
                   }),
                   "worker 'iv': .aloop = 'io'"));
    CHECK(contains(at_construction(
                       [&] { (void)atask::queue_worker<int>(sv, [](int) {}, {.name = "q", .aloop = "io"}); }),
                   "worker 'q': .aloop = 'io'"));
    // Unnamed: the kind stands in for the name. Nothing was registered.
    CHECK(contains(at_construction([&] { (void)atask::event_worker(sv, [] {}, {.aloop = "io"}); }),
                   "an event worker: .aloop = 'io'"));
    CHECK(sv.workers().empty());

    // In a start() override: refused, and the worker stays stopped.
    Counter runs;
    auto ev = atask::event_worker(sv, [&] { runs.bump(); }, {.name = "ev"});
    const auto st = what_of<atask::OptionsError>([&] { ev->start({.aloop = "io"}); });
    CHECK(contains(st, "EventWorker::start()"));
    CHECK(contains(st, "worker 'ev': .aloop = 'io'"));
    CHECK(ev->is_stopped());
    CHECK(ev->start());  // without the override it starts and runs
    CHECK(ev->trigger());
    CHECK(runs.wait_for_at_least(1));

    // A coroutine executor takes the aloop, at construction and in start().
    Event on_io;
    auto co = atask::event_worker(sv,
                                  [&]() -> asio::awaitable<void> {
                                    on_io.set();
                                    co_return;
                                  },
                                  {.name = "co", .aloop = "io"});
    CHECK(co->start({.aloop = "io"}));
    CHECK(co->trigger());
    CHECK(on_io.wait_for());
  }

  TEST_CASE("a trigger that a stop or a restart drops before its run began is counted") {
    StartedSupervisor sv(options("dropped"));
    Event release;
    OpenOnExit open{&release};
    Counter entered, runs;
    auto w = atask::event_worker(sv, [&] {
      entered.bump();
      REQUIRE(release.wait_for());
      runs.bump();
    });
    w->start();
    REQUIRE(w->trigger());
    REQUIRE(entered.wait_for_at_least(1));         // run 1 is going: what follows waits
    CHECK(w->trigger());                           // one more run pending...
    CHECK(w->trigger());                           // ...coalesced with it
    CHECK(w->trigger(atask::TriggerMode::force));  // a run of its own
    CHECK(w->info().pending_runs == 2);
    CHECK(w->info().triggers_dropped == 0);
    w->request_stop();  // the stop begins now: the two pending runs are dropped
    CHECK(w->info().triggers_dropped == 2);
    CHECK(w->info().pending_runs == 0);
    CHECK_FALSE(w->trigger());  // not active: false, and not counted
    release.set();
    REQUIRE(w->wait_stopped_for(patience));
    CHECK(runs.value() == 1);
    CHECK(w->info().triggers_dropped == 2);

    // restart() drops a pending trigger too. The run it finds is held open
    // again: only the first run of each start waits.
    Event release2;
    OpenOnExit open2{&release2};
    auto v = atask::event_worker(sv, [&] {
      if (entered.bump() == 2) REQUIRE(release2.wait_for());
    });
    v->start();
    REQUIRE(v->trigger());
    REQUIRE(entered.wait_for_at_least(2));
    CHECK(v->trigger());
    auto restarted = std::async(std::launch::async, [&] { v->restart(); });
    REQUIRE(eventually([&] { return v->state() == WorkerState::stopping; }));
    CHECK(v->info().triggers_dropped == 1);
    release2.set();
    wait_or_abort(restarted, "Worker::restart()");
    CHECK(v->is_active());
    CHECK(v->info().triggers_dropped == 1);
    CHECK(entered.value() == 2);  // the dropped trigger never ran
  }

  TEST_CASE("a run that a trigger asked for and that ran is not counted as dropped") {
    StartedSupervisor sv(options("notdropped"));
    Counter runs;
    auto w = atask::event_worker(sv, [&] { runs.bump(); });
    w->start();
    CHECK(w->trigger());
    REQUIRE(runs.wait_for_at_least(1));
    REQUIRE(eventually([&] { return w->info().runs == 1; }));
    w->stop();
    CHECK(w->info().triggers_dropped == 0);
  }

  TEST_CASE("put and try_put reach a queue worker held as a Worker and refuse other workers by name") {
    StartedSupervisor sv(options("heldasworker"));
    Counter got;
    std::atomic<int> sum{0};
    std::vector<std::unique_ptr<atask::Worker>> all;
    all.push_back(atask::queue_worker<int>(sv,
                                           [&](int x) {
                                             sum += x;
                                             got.bump();
                                           },
                                           {.name = "nums", .capacity = 1}));
    all.push_back(atask::event_worker(sv, [] {}, {.name = "ev"}));
    all.push_back(atask::queue_worker<std::string>(sv, [](std::string) {}, {.name = "words"}));
    for (auto& w : all) w->start();

    atask::Worker& nums = *all[0];
    atask::put(nums, 2);
    int three = 3;
    atask::put(nums, three);
    REQUIRE(got.wait_for_at_least(2));
    CHECK(atask::try_put(nums, 4));
    REQUIRE(got.wait_for_at_least(3));
    CHECK(sum.load() == 9);
    CHECK(atask::try_put<std::string>(*all[2], "text"));

    const auto ev = what_of<atask::LifecycleError>([&] { atask::put(*all[1], 1); });
    CHECK(contains(ev, "atask::put()"));
    CHECK(contains(ev, "worker 'ev' is an event worker, not a queue worker of 'int'"));
    const auto words = what_of<atask::LifecycleError>([&] { (void)atask::try_put(*all[2], 5); });
    CHECK(contains(words, "atask::try_put()"));
    CHECK(contains(words, "worker 'words' is a queue worker, but its items are not of type 'int'"));
    // The queue's own rules hold: a stopped queue refuses the item.
    all[0]->stop();
    CHECK(contains(what_of<atask::LifecycleError>([&] { atask::put(nums, 5); }), "is not active"));
  }

  TEST_CASE(
      "trigger, accepts_json and try_put_json reach a worker held as a Worker and refuse others by kind") {
    StartedSupervisor sv(options("heldtrigger"));
    Counter runs, got;
    std::vector<std::unique_ptr<atask::Worker>> all;
    all.push_back(atask::event_worker(sv, [&] { runs.bump(); }, {.name = "ev"}));
    all.push_back(atask::queue_worker<int>(sv, [&](int) { got.bump(); }, {.name = "nums"}));
    all.push_back(atask::background_worker(sv, [](WorkerContext& ctx) { return !ctx.stop_requested(); },
                                           {.name = "loop"}));
    struct Opaque {};
    all.push_back(atask::queue_worker<Opaque>(sv, [](Opaque) {}, {.name = "opaque"}));
    for (auto& w : all) w->start();

    CHECK(atask::trigger(*all[0]));
    REQUIRE(runs.wait_for_at_least(1));
    CHECK(atask::trigger(*all[0], atask::TriggerMode::force));
    REQUIRE(runs.wait_for_at_least(2));
    CHECK(contains(what_of<atask::LifecycleError>([&] { (void)atask::trigger(*all[1]); }),
                   "worker 'nums' is a queue worker: only event and interval workers can be triggered"));

    CHECK(atask::accepts_json(*all[1]));
    CHECK_FALSE(atask::accepts_json(*all[0]));
    CHECK_FALSE(atask::accepts_json(*all[3]));
    CHECK(atask::try_put_json(*all[1], boost::json::value(7)));
    REQUIRE(got.wait_for_at_least(1));
    CHECK(contains(
        what_of<atask::ConversionError>([&] { (void)atask::try_put_json(*all[1], boost::json::value("x")); }),
        "does not convert to the queue's item type"));
    CHECK(contains(
        what_of<atask::LifecycleError>([&] { (void)atask::try_put_json(*all[0], boost::json::value(1)); }),
        "worker 'ev' is an event worker, not a queue worker"));
    CHECK(contains(
        what_of<atask::LifecycleError>([&] { (void)atask::try_put_json(*all[3], boost::json::value(1)); }),
        "do not convert from JSON"));
    const auto infos = sv.workers();
    REQUIRE(infos.size() == 4);
    CHECK(infos[0].can_trigger);
    CHECK_FALSE(infos[1].can_trigger);
    CHECK(infos[1].accepts_json);
    CHECK_FALSE(infos[3].accepts_json);
    CHECK(infos[2].kind == atask::WorkerKind::background);
  }

  TEST_CASE("request_stop returns at once and stop waits for the running call") {
    StartedSupervisor sv(options("reqstop"));
    Gate gate;
    auto w = atask::event_worker(sv, [&] { gate.hold(); }, {.name = "held"});
    w->start();
    w->trigger();
    REQUIRE(gate.entered.wait_for());
    w->request_stop();  // the call is held: a waiting stop would not return
    CHECK(w->state() == WorkerState::stopping);
    auto waiting = std::async(std::launch::async, [&] { w->stop(); });
    CHECK(waiting.wait_for(50ms) == std::future_status::timeout);  // still held: stop() waits
    gate.release.set();
    REQUIRE(waiting.wait_for(patience) == std::future_status::ready);
    CHECK(w->is_stopped());
  }

  TEST_CASE("every worker type is a BasicWorker of a source and a form") {
    static_assert(
        std::is_same_v<atask::BackgroundWorker, atask::BasicWorker<atask::LoopSource, atask::Blocking>>);
    static_assert(
        std::is_same_v<atask::AsyncWorker, atask::BasicWorker<atask::LoopSource, atask::Coroutine>>);
    static_assert(std::is_same_v<atask::EventWorker, atask::BasicWorker<atask::TriggerSource>>);
    static_assert(std::is_same_v<atask::AsyncIntervalWorker,
                                 atask::BasicWorker<atask::ScheduleSource, atask::Coroutine>>);
    static_assert(std::is_same_v<atask::AsyncQueueWorker<int>,
                                 atask::BasicWorker<atask::QueueSource<int>, atask::Coroutine>>);
    static_assert(std::is_base_of_v<atask::TriggerSource, atask::IntervalWorker>);
    // The factories pick the form from the callable.
    StartedSupervisor sv(options("forms"));
    auto a = atask::event_worker(sv, [] {});
    auto b = atask::event_worker(sv, []() -> asio::awaitable<void> { co_return; });
    static_assert(std::is_same_v<decltype(a), std::unique_ptr<atask::EventWorker>>);
    static_assert(std::is_same_v<decltype(b), std::unique_ptr<atask::AsyncEventWorker>>);
    CHECK_FALSE(a->coroutine());
    CHECK(b->coroutine());
    CHECK(a->kind() == atask::WorkerKind::event);
    CHECK(b->kind() == atask::WorkerKind::event);
  }
}

namespace {

// A subclass whose executor uses one of its own members until it is asked
// to stop; the member notes, as it is destroyed, whether the executor was
// still inside its call.
struct MemberProbe {
  std::atomic<bool>* in_call;
  std::atomic<int>* destroyed_during_call;
  ~MemberProbe() {
    if (in_call->load()) destroyed_during_call->fetch_add(1);
  }
};

struct Spinner : atask::BackgroundWorker {
  Spinner(atask::WorkerInit init, test::Event& entered, std::atomic<bool>& in_call, std::atomic<int>& bad)
      : BasicWorker(std::move(init), {.name = "spinner"}), entered_(entered), probe_{&in_call, &bad} {}

  bool run(WorkerContext& ctx) override {
    probe_.in_call->store(true);
    entered_.set();
    // Uses the member until the stop comes (bounded: a missing stop fails the test, never hangs it).
    for (int i = 0; i < 20'000 && !ctx.stop_requested(); ++i) std::this_thread::sleep_for(1ms);
    probe_.in_call->store(false);
    return false;
  }

  test::Event& entered_;
  MemberProbe probe_;
};

// A subclass whose construction pauses after its Worker base is built:
// its own member is still being initialized when `entered` is set.
struct SlowBuilt : atask::BackgroundWorker {
  struct Gate {
    Gate(test::Event& entered, test::Event& release) {
      entered.set();
      CHECK(release.wait_for());
    }
  };
  SlowBuilt(atask::WorkerInit init, test::Event& entered, test::Event& release)
      : BasicWorker(std::move(init), {.name = "slow-built"}), gate_(entered, release) {}
  bool run(WorkerContext&) override { return false; }
  Gate gate_;
};

// Construction goes through AutoStop only: these do not compile.
static_assert(!std::is_constructible_v<Spinner, atask::Supervisor&, test::Event&, std::atomic<bool>&,
                                       std::atomic<int>&>);
static_assert(!std::is_constructible_v<atask::WorkerInit, atask::Supervisor&>);
static_assert(!std::is_default_constructible_v<atask::WorkerInit>);
static_assert(!std::is_copy_constructible_v<atask::WorkerInit>);
static_assert(std::is_constructible_v<atask::AutoStop<Spinner>, atask::Supervisor&, test::Event&,
                                      std::atomic<bool>&, std::atomic<int>&>);

}  // namespace

TEST_SUITE("workers") {
  TEST_CASE("a subclass is stopped before its members go: make_worker and AutoStop, by construction") {
    StartedSupervisor sv(options("bycons"));
    for (int round = 0; round < 2; ++round) {
      test::Event entered;
      std::atomic<bool> in_call{false};
      std::atomic<int> bad{0};
      if (round == 0) {
        auto w = atask::make_worker<Spinner>(sv, entered, in_call, bad);
        w->start();
        REQUIRE(entered.wait_for());
        CHECK(in_call.load());
      }  // destroyed while its executor runs
      else {
        atask::AutoStop<Spinner> w(sv, entered, in_call, bad);
        w.start();
        REQUIRE(entered.wait_for());
      }
      CHECK_FALSE(in_call.load());
      CHECK(bad.load() == 0);
      CHECK(sv.workers().empty());
    }
  }

  TEST_CASE("a worker still being constructed is not listed or reachable by name, but its name is taken") {
    // Other threads (the HTTP API, the dashboard's readings, a stop) call
    // listed workers' virtual functions: a half-built one must not be
    // listed, or they race with its constructor on its vtable pointer.
    StartedSupervisor sv(options("halfbuilt"));
    test::Event entered, release;
    std::unique_ptr<SlowBuilt> w;
    std::thread builder([&] { w = atask::make_worker<SlowBuilt>(sv, entered, release); });
    REQUIRE(entered.wait_for());
    CHECK(sv.workers().empty());
    auto registry = atask::detail::SupervisorAccess::worker_registry(sv);
    CHECK(registry->size() == 0);
    bool reached = false;
    CHECK_FALSE(registry->with_worker("slow-built", [&](atask::Worker&) { reached = true; }));
    CHECK_FALSE(reached);
    CHECK_THROWS_AS(
        (void)atask::background_worker(sv, [](WorkerContext&) { return false; }, {.name = "slow-built"}),
        atask::OptionsError);
    release.set();
    builder.join();
    REQUIRE(w);
    const auto infos = sv.workers();
    REQUIRE(infos.size() == 1);
    CHECK(infos.front().name == "slow-built");
    CHECK(registry->size() == 1);
    CHECK(registry->with_worker("slow-built", [&](atask::Worker& found) { reached = &found == w.get(); }));
    CHECK(reached);
    w.reset();
    CHECK(sv.workers().empty());
    CHECK(registry->size() == 0);
  }

  TEST_CASE("a worker destroyed while its executor asks for a restart is not started again") {
    StartedSupervisor sv(options("restartdestroy"));
    for (int round = 0; round < 100; ++round) {
      std::atomic<int> calls{0};
      std::atomic<bool> first{true};
      Event asked;
      auto w = atask::background_worker(sv, [&](WorkerContext& ctx) {
        calls.fetch_add(1);
        if (first.exchange(false)) {
          ctx.worker.restart();  // the worker starts again once this call returns...
          asked.set();
        }
        return true;
      });
      w->start();
      REQUIRE(asked.wait_for());
      w.reset();  // ...unless it is being destroyed: then it must stay stopped
      const int after = calls.load();
      // A task submitted now runs after anything the pool had queued.
      REQUIRE(sv.submit({.priority = Priority::low}, [] {}).wait_for(patience));
      CHECK(calls.load() == after);
      CHECK(sv.workers().empty());
    }
  }
}
