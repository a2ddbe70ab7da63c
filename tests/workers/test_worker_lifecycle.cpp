#include <atask/workers.hpp>

#include <doctest/doctest.h>

#include "support.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using atask::WorkerContext;

using namespace test;

namespace {

atask::SupervisorOptions opts(const char* id, int pool_size = 2) {
  return {.id = id, .pool_size = pool_size, .logger = quiet_logger()};
}

// -- torture bookkeeping ---------------------------------------------------------------------
//
// The rule under test: once a stop(wait = true) has returned, no executor
// call of that worker begins unless a start()/restart() was issued after
// the stop was called (or was still under way then: it may start the
// worker after the stop). Executors here never stop or restart their
// worker themselves.
//
// A stopper reads `starts` before it calls stop(). When no start is in
// flight then, every start so far has returned before the stop was called:
// the stop covers the active period they made, and only a start issued
// later may make another. Once stop() has returned, the stopper
// publishes 1 + the begun count it read as `fence` (the largest wins). An
// executor call that begins, sees a fence f and finds the begun count still
// at f - 1 has begun after that stop returned with no start issued since
// the stop was called: a violation. (A call that began before the stop
// returned has ended before it returned, so it cannot see that fence.)
// Everything is seq_cst: the stopper's read, its publication and the
// executor's two reads are in one order.
struct Tracked {
  static constexpr std::uint64_t one_begun = std::uint64_t{1} << 32;

  // High 32 bits: start()/restart() calls begun; low 32 bits: those still in flight.
  std::atomic<std::uint64_t> starts{0};
  std::atomic<std::uint64_t> fence{0};  // 0 = no waited stop has returned yet
  std::atomic<std::uint64_t> calls{0};
  int index = 0;
  std::unique_ptr<atask::Worker> w;
  std::function<void(std::uint32_t)> poke;  // trigger or put; no-op for background workers
};

std::atomic<int> violations{0};
std::atomic<int> first_violator{-1};

// First thing in every executor call.
void enter(Tracked& t) {
  const std::uint64_t f = t.fence.load();
  const std::uint64_t begun = t.starts.load() >> 32;
  if (f != 0 && begun + 1 == f) {
    ++violations;
    int none = -1;
    first_violator.compare_exchange_strong(none, t.index);
  }
  ++t.calls;
}

void publish_fence(Tracked& t, std::uint64_t value) {
  std::uint64_t cur = t.fence.load();
  while (cur < value && !t.fence.compare_exchange_weak(cur, value)) {
  }
}

// A short piece of work that ends early when the worker stops.
void work_a_little(WorkerContext& ctx) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lk(m);
  cv.wait_for(lk, ctx.stop_token, 300us, [] { return false; });
}

asio::awaitable<void> work_a_little_async() {
  asio::steady_timer t(co_await asio::this_coro::executor, 300us);
  co_await t.async_wait(asio::use_awaitable);  // the stop cancels it: not an error
}

}  // namespace

TEST_SUITE("worker lifecycle") {
  TEST_CASE("a waiting stop on a worker that never started returns at once") {
    atask::Supervisor sv(opts("lc-never"));
    sv.start();
    auto w = atask::event_worker(sv, [] {});
    auto f = std::async(std::launch::async, [&] { w->stop(); });
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(w->is_stopped());
  }

  TEST_CASE("a waiting stop returns when its stop completed although the worker was started again at once") {
    // Thread A calls stop() while the executor is held. The stop request
    // runs the executor's stop callback on A's thread, after the worker went
    // to stopping and before A begins to wait: there the callback lets the
    // executor return, waits until the worker is stopped, and has thread B
    // start it again. A then waits - and must see that its stop completed,
    // though the worker is active again (it used to wait for a stopped
    // state that never came back).
    atask::Supervisor sv(opts("lc-restart-race"));
    sv.start();
    Event entered, release, go_b, b_done;
    std::atomic<int> calls{0};
    std::atomic<bool> saw_stopped{false};
    // Outlives the executor call: destroying a stop_callback waits for it
    // to finish, and this one waits for the executor to return.
    std::optional<std::stop_callback<std::function<void()>>> on_stop;
    std::unique_ptr<atask::EventWorker> w;
    w = atask::event_worker(sv, [&](WorkerContext& ctx) {
      if (++calls != 1) return;
      on_stop.emplace(ctx.stop_token, std::function<void()>([&] {
                        CHECK(w->state() == atask::WorkerState::stopping);  // the stop was requested
                        release.set();
                        saw_stopped = w->wait_stopped_for(patience);
                        go_b.set();
                        CHECK(b_done.wait_for());
                      }));
      entered.set();
      CHECK(release.wait_for());
    });
    OpenOnExit open{&release, &go_b, &b_done};
    REQUIRE(w->start());
    REQUIRE(w->trigger());
    REQUIRE(entered.wait_for());

    std::atomic<bool> b_started{false};
    auto b = std::async(std::launch::async, [&] {
      if (go_b.wait_for()) b_started = w->start();
      b_done.set();
    });
    auto a = std::async(std::launch::async, [&] { w->stop(); });
    const bool a_returned = a.wait_for(patience) == std::future_status::ready;
    if (!a_returned) w->request_stop();  // the old hang: let A go, so that the test fails instead of hanging
    CHECK(a_returned);
    REQUIRE(a.wait_for(patience) == std::future_status::ready);
    REQUIRE(b.wait_for(patience) == std::future_status::ready);
    a.get();
    b.get();
    CHECK(saw_stopped.load());
    CHECK(b_started.load());
    CHECK(w->is_active());  // A's stop did not stop the period B started
    CHECK(calls.load() == 1);
    w->stop();
    CHECK(w->is_stopped());
  }

  TEST_CASE(
      "workers started, stopped, restarted, triggered and fed by 4 threads at once keep every promise") {
    constexpr int n_workers = 40;
    constexpr int n_threads = 4;
    constexpr int ops_per_thread = 1500;

    atask::Supervisor sv(opts("lc-torture", 8));
    sv.start();
    violations = 0;
    first_violator = -1;
    std::atomic<int> errors{0};
    auto count_error = [&](const atask::WorkerError&) { ++errors; };

    std::vector<std::unique_ptr<Tracked>> ws;
    for (int i = 0; i < n_workers; ++i) {
      auto t = std::make_unique<Tracked>();
      Tracked& r = *t;
      r.index = i;
      const std::string name = "w" + std::to_string(i);
      const atask::WorkerOptions wo{.name = name, .on_error = count_error};
      const atask::IntervalOptions io{.name = name, .on_error = count_error, .interval = 2ms};
      atask::QueueOptions<int> qo;
      qo.name = name;
      qo.on_error = count_error;
      switch (i % 8) {
        case 0:
          r.w = atask::background_worker(
              sv,
              [&r](WorkerContext& ctx) {
                enter(r);
                work_a_little(ctx);
              },
              wo);
          break;
        case 1:
          r.w = atask::background_worker(
              sv,
              [&r](WorkerContext&) -> asio::awaitable<void> {
                enter(r);
                co_await work_a_little_async();
              },
              wo);
          break;
        case 2: {
          auto e = atask::event_worker(
              sv, [&r] { enter(r); }, wo);
          r.poke = [e = e.get()](std::uint32_t x) {
            e->trigger(x % 2 == 0 ? atask::TriggerMode::force : atask::TriggerMode::coalesce);
          };
          r.w = std::move(e);
          break;
        }
        case 3: {
          auto e = atask::event_worker(
              sv,
              [&r]() -> asio::awaitable<void> {
                enter(r);
                co_return;
              },
              wo);
          r.poke = [e = e.get()](std::uint32_t x) {
            e->trigger(x % 2 == 0 ? atask::TriggerMode::force : atask::TriggerMode::coalesce);
          };
          r.w = std::move(e);
          break;
        }
        case 4: {
          auto e = atask::interval_worker(
              sv, [&r] { enter(r); }, io);
          r.poke = [e = e.get()](std::uint32_t) { e->trigger(); };
          r.w = std::move(e);
          break;
        }
        case 5: {
          auto e = atask::interval_worker(
              sv,
              [&r]() -> asio::awaitable<bool> {
                enter(r);
                co_return true;
              },
              io);
          r.poke = [e = e.get()](std::uint32_t) { e->trigger(); };
          r.w = std::move(e);
          break;
        }
        case 6: {
          auto q = atask::queue_worker<int>(
              sv, [&r](int) { enter(r); }, std::move(qo));
          r.poke = [q = q.get()](std::uint32_t x) {
            try {
              q->try_put(static_cast<int>(x));
            } catch (const atask::LifecycleError&) {  // not active
            }
          };
          r.w = std::move(q);
          break;
        }
        default: {
          auto q = atask::queue_worker<int>(
              sv,
              [&r](int, WorkerContext&) -> asio::awaitable<void> {
                enter(r);
                co_return;
              },
              std::move(qo));
          r.poke = [q = q.get()](std::uint32_t x) {
            try {
              q->try_put(static_cast<int>(x));
            } catch (const atask::LifecycleError&) {
            }
          };
          r.w = std::move(q);
          break;
        }
      }
      ws.push_back(std::move(t));
    }

    std::atomic<bool> quit{false};
    std::atomic<int> fences{0}, unexpected{0};
    std::mutex first_m;
    std::string first_unexpected;
    auto note_unexpected = [&](const std::string& what) {
      ++unexpected;
      std::lock_guard lk(first_m);
      if (first_unexpected.empty()) first_unexpected = what;
    };
    auto waited_stop = [&](Tracked& t) {
      const std::uint64_t before = t.starts.load();
      t.w->stop();
      if ((before & 0xffffffffu) == 0) {  // no start in flight when the stop was called
        publish_fence(t, (before >> 32) + 1);
        ++fences;
      }
    };
    auto thread_body = [&](int k) {
      std::mt19937 rng(1000 + k);
      for (int op = 0; op < ops_per_thread && !quit; ++op) {
        // Half of the calls go to 8 hot workers (one of each kind), so that
        // threads often meet on one worker.
        Tracked& t = *ws[rng() % 2 ? rng() % 8 * 5 : rng() % n_workers];
        const std::uint32_t dice = rng() % 100;
        try {
          if (dice < 25 || (dice >= 60 && dice < 70)) {  // start / restart
            t.starts += Tracked::one_begun + 1;
            try {
              if (dice < 12)
                t.w->start();
              else if (dice < 25)  // overrides, which restart() uses again
                t.w->start({.priority = dice % 2 ? atask::Priority::high : atask::Priority::low});
              else
                t.w->restart();
            } catch (...) {
              t.starts -= 1;
              throw;
            }
            t.starts -= 1;
          } else if (dice < 45) {
            waited_stop(t);
          } else if (dice < 60) {
            t.w->request_stop();
          } else if (t.poke) {
            t.poke(rng());
          }
        } catch (const std::exception& e) {
          note_unexpected(t.w->name() + ": " + e.what());
        }
      }
    };

    std::vector<std::future<void>> threads;
    for (int k = 0; k < n_threads; ++k) threads.push_back(std::async(std::launch::async, thread_body, k));
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    bool all_returned = true;
    for (auto& f : threads)
      all_returned = f.wait_until(deadline) == std::future_status::ready && all_returned;
    if (!all_returned) {
      // A call hangs. Let it go, so that the test fails instead of hanging:
      // the other threads quit, and stopping every worker brings back the
      // stopped state a hung stop() may be waiting for.
      quit = true;
      for (int round = 0; round < 20; ++round) {
        for (auto& t : ws) t->w->request_stop();
        bool ready = true;
        for (auto& f : threads) ready = f.wait_for(500ms) == std::future_status::ready && ready;
        if (ready) break;
      }
      for (auto& f : threads)
        if (f.wait_for(0s) != std::future_status::ready) {
          std::fputs("worker lifecycle torture: a thread still hangs after every worker was stopped\n",
                     stderr);
          std::abort();
        }
    }
    CHECK_MESSAGE(all_returned, "a worker call did not return within 60 s");
    for (auto& f : threads) f.get();

    // Stop everything, waiting; that must return too.
    auto final_stop = std::async(std::launch::async, [&] {
      for (auto& t : ws) waited_stop(*t);
    });
    if (final_stop.wait_for(60s) != std::future_status::ready) {
      std::fputs("worker lifecycle torture: stopping every worker with wait hangs\n", stderr);
      std::abort();  // a hung stop() can not be let go any more: don't hang the suite
    }
    final_stop.get();

    std::uint64_t calls = 0;
    for (auto& t : ws) {
      CHECK_MESSAGE(t->w->is_stopped(), t->w->name());
      calls += t->calls.load();
    }
    MESSAGE("executor calls: " << calls << ", waited stops checked: " << fences.load());
    CHECK_MESSAGE(unexpected.load() == 0, first_unexpected);
    CHECK(errors.load() == 0);
    CHECK_MESSAGE(violations.load() == 0, "first on worker w" << first_violator.load());
    CHECK(fences.load() > 0);
    CHECK(calls > 0);
  }
}
