// Worker benchmarks, each next to a baseline measured in the same run:
//  1. trigger-to-start latency on an idle event worker, p50/p99: EventWorker
//     (blocking executor) vs Supervisor::pool().post() on the same supervisor,
//     AsyncEventWorker (coroutine executor) vs asio::post() to the same aloop.
//     One trigger at a time: stamp, trigger(), the executor stamps on entry
//     and signals; then 1 ms of idleness (every thread asleep) and the next.
//  2. interval drift: IntervalWorker at 10 ms for N ticks vs a plain
//     asio::steady_timer re-armed with expires_at(prev + 10ms) on its own
//     io_context thread: total drift and p50/p99 lateness of each run.
//  3. 10,000 idle event workers (created and started, never triggered):
//     memory per worker (RSS and malloc'd bytes), the time to stop them all,
//     and Supervisor::stop() with all of them active; baselines: 10,000 idle
//     Asio coroutines each waiting on a steady_timer, 1,000 idle threads
//     blocked on a condition variable.
//  4. (queue worker throughput is bench_queue's)
//  5. background_task throughput: calls of a wrapped empty callable with the
//     handles kept, then all waited for; baseline: pool().post() of the same
//     number of tasks on the same supervisor (no handle, no registry entry).
// Throughputs are medians of several repetitions; latencies pool samples
// taken in interleaved rounds. Prints a table, then one JSON object on the
// last line.
//
// Usage: bench_workers [--quick]

#include "support.hpp"

#include <atask/atask.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace bench;
using namespace std::chrono_literals;

namespace {

// Bytes handed out by malloc (all arenas): the heap part of a measurement,
// free of page granularity.
long heap_bytes() {
  return static_cast<long>(mallinfo2().uordblks);
}

// Gives freed heap pages back to the kernel so that the next RSS delta sees
// new allocations instead of reused pages.
void settle() {
  malloc_trim(0);
}

std::shared_ptr<spdlog::logger> quiet() {
  auto l = std::make_shared<spdlog::logger>("bench");
  l->set_level(spdlog::level::off);
  return l;
}

// A signal an executor raises with a time stamp; the waiter wants the n-th one.
class Signal {
 public:
  void raise(clk::time_point t) {
    std::lock_guard lk(m_);
    t_ = t;
    ++seq_;
    cv_.notify_one();
  }
  clk::time_point wait(long n) {
    std::unique_lock lk(m_);
    cv_.wait(lk, [&] { return seq_ >= n; });
    return t_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  clk::time_point t_{};
  long seq_ = 0;
};

// A gate opened once.
class Gate {
 public:
  void open() {
    std::lock_guard lk(m_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lk(m_);
    cv_.wait(lk, [&] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Counts completions; the last one opens the gate.
struct Done {
  explicit Done(long n) : left(n) {}
  void hit() {
    if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) gate.open();
  }
  std::atomic<long> left;
  Gate gate;
};

struct Latency {
  std::vector<double> start_us;  // trigger/post -> executor entry
  std::vector<double> call_us;   // how long the trigger()/post() call itself took
  double p(double q) const { return percentile(start_us, q); }
};

// `samples` one-at-a-time shots: idle 1 ms, stamp, fire, wait for the
// executor's entry stamp.
template <class Fire>
void shots(int samples, Signal& sig, long& seq, Latency& out, Fire&& fire) {
  for (int i = 0; i < samples; ++i) {
    std::this_thread::sleep_for(1ms);
    const auto t0 = clk::now();
    fire();
    const auto t1 = clk::now();
    const auto entered = sig.wait(++seq);
    out.start_us.push_back(us(entered - t0));
    out.call_us.push_back(us(t1 - t0));
  }
}

struct Drift {
  double total_drift_us = 0;  // (last start - first start) - (N-1) * interval
  double p50_late_us = 0, p99_late_us = 0, max_late_us = 0;
  double first_late_us = 0;  // the run at start(), not a timer's
  std::uint64_t skipped = 0;
};

Drift drift_of(const std::vector<clk::time_point>& starts, clk::time_point t_start, clk::duration interval) {
  Drift d;
  const auto n = static_cast<long>(starts.size());
  d.total_drift_us = us((starts.back() - starts.front()) - (n - 1) * interval);
  std::vector<double> late;
  late.reserve(starts.size());
  for (long k = 0; k < n; ++k) late.push_back(us(starts[k] - (t_start + k * interval)));
  d.p50_late_us = percentile(late, .5);
  d.p99_late_us = percentile(late, .99);
  d.max_late_us = *std::max_element(late.begin(), late.end());
  d.first_late_us = late.front();
  return d;
}

// The coroutine baseline of section 3.
asio::awaitable<void> idle_coroutine(asio::steady_timer* t, std::atomic<int>* waiting,
                                     std::atomic<int>* finished) {
  waiting->fetch_add(1, std::memory_order_relaxed);
  // redirect_error: a cancel ends the wait without throwing (an exception per
  // coroutine would make this baseline's stop look slow).
  boost::system::error_code ec;
  co_await t->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  finished->fetch_add(1, std::memory_order_release);
}

void wait_until(const std::atomic<int>& a, int n) {
  while (a.load(std::memory_order_acquire) < n) std::this_thread::sleep_for(100us);
}

// -- table --------------------------------------------------------------------------
struct Row {
  std::string metric, atask, base, ratio, target, met;
};
std::vector<Row> rows;

std::string ratio(double a, double b) {
  return b > 0 ? num("%.2fx", a / b) : "-";
}
}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int lat_samples = quick ? 1'000 : 10'000;  // per series
  const int lat_rounds = quick ? 2 : 5;            // interleaved rounds
  const int ticks = quick ? 200 : 1'000;
  const int idle_workers = 10'000, idle_coros = 10'000, idle_threads = 1'000;
  const long bg_tasks = quick ? 200'000 : 1'000'000;
  const int runs = quick ? 3 : 5;
  const auto interval = 10ms;
  const std::string load_start = loadavg();

  // ============ 3. idle workers: memory and stop (first: a fresh heap) ===========
  long w_rss = 0, w_heap = 0, c_rss = 0, c_heap = 0, t_rss = 0;
  double create_ms = 0, start_ms = 0, stop_nowait_ms = 0, stop_wait_each_ms = 0, restart_ms = 0,
         sv_stop_ms = 0, sv_stop_empty_ms = 0, destroy_ms = 0, create_first_half_ms = 0,
         destroy_second_half_ms = 0, coro_cancel_ms = 0, thread_stop_ms = 0;
  std::uint64_t idle_runs = 0;
  {
    // Baseline for Supervisor::stop(): the same supervisor without workers.
    {
      atask::Supervisor sv({.id = "empty", .pool_size = 2, .logger = quiet()});
      sv.start();
      const auto t0 = clk::now();
      sv.stop();
      sv_stop_empty_ms = ms(clk::now() - t0);
    }
    std::atomic<long> fired{0};
    atask::Supervisor sv({.id = "idle", .pool_size = 2, .logger = quiet()});
    sv.start();
    std::vector<std::unique_ptr<atask::EventWorker>> ws;
    ws.reserve(idle_workers);
    settle();
    const long rss0 = rss_kib(), heap0 = heap_bytes();
    clk::time_point t_half;
    auto t0 = clk::now();
    for (int i = 0; i < idle_workers; ++i) {
      if (i == idle_workers / 2) t_half = clk::now();
      ws.push_back(atask::event_worker(sv, [&fired] { fired.fetch_add(1); }));
    }
    auto t1 = clk::now();
    create_first_half_ms = ms(t_half - t0);
    for (auto& w : ws) w->start();
    auto t2 = clk::now();
    w_rss = rss_kib() - rss0;
    w_heap = heap_bytes() - heap0;
    create_ms = ms(t1 - t0);
    start_ms = ms(t2 - t1);
    // (a) request_stop() on every worker, then wait for each to be stopped.
    t0 = clk::now();
    for (auto& w : ws) w->request_stop();
    for (auto& w : ws) w->wait_stopped_for(60s);
    stop_nowait_ms = ms(clk::now() - t0);
    t0 = clk::now();
    for (auto& w : ws) w->start();
    restart_ms = ms(clk::now() - t0);
    // (b) stop() on each, one after the other.
    t0 = clk::now();
    for (auto& w : ws) w->stop();
    stop_wait_each_ms = ms(clk::now() - t0);
    for (auto& w : ws) w->start();
    // (c) Supervisor::stop() with all of them active (its "workers" step stops them).
    t0 = clk::now();
    sv.stop();
    sv_stop_ms = ms(clk::now() - t0);
    for (auto& w : ws) idle_runs += w->info().runs;
    t0 = clk::now();
    ws.resize(idle_workers / 2);  // destroys the second half (created last)
    destroy_second_half_ms = ms(clk::now() - t0);
    ws.clear();
    destroy_ms = ms(clk::now() - t0);
  }
  {
    // Baseline: idle coroutines, each waiting on its own steady_timer.
    asio::io_context ctx;
    auto guard = asio::make_work_guard(ctx);
    std::thread th([&] { ctx.run(); });
    std::deque<asio::steady_timer> timers;
    std::atomic<int> waiting{0}, finished{0};
    settle();
    const long rss0 = rss_kib(), heap0 = heap_bytes();
    for (int i = 0; i < idle_coros; ++i) {
      timers.emplace_back(ctx, std::chrono::hours(1));
      asio::co_spawn(ctx, idle_coroutine(&timers.back(), &waiting, &finished), asio::detached);
    }
    wait_until(waiting, idle_coros);
    std::this_thread::sleep_for(10ms);  // the last ones reach their wait
    c_rss = rss_kib() - rss0;
    c_heap = heap_bytes() - heap0;
    const auto t0 = clk::now();
    asio::post(ctx, [&] {
      for (auto& t : timers) t.cancel();
    });
    wait_until(finished, idle_coros);
    coro_cancel_ms = ms(clk::now() - t0);
    guard.reset();
    th.join();
  }
  {
    // Baseline: idle threads blocked on a condition variable.
    std::mutex m;
    std::condition_variable cv;
    bool go = false;
    std::atomic<int> waiting{0};
    std::vector<std::thread> ts;
    ts.reserve(idle_threads);
    settle();
    const long rss0 = rss_kib();
    for (int i = 0; i < idle_threads; ++i)
      ts.emplace_back([&] {
        std::unique_lock lk(m);
        waiting.fetch_add(1);
        cv.wait(lk, [&] { return go; });
      });
    wait_until(waiting, idle_threads);
    std::this_thread::sleep_for(10ms);
    t_rss = rss_kib() - rss0;
    const auto t0 = clk::now();
    {
      std::lock_guard lk(m);
      go = true;
    }
    cv.notify_all();
    for (auto& t : ts) t.join();
    thread_stop_ms = ms(clk::now() - t0);
  }
  const double w_kib = double(w_rss) / idle_workers, w_heap_b = double(w_heap) / idle_workers;
  const double c_kib = double(c_rss) / idle_coros, c_heap_b = double(c_heap) / idle_coros;
  const double t_kib = double(t_rss) / idle_threads;

  // ============ 1. trigger -> executor start latency ================================
  Latency post_lat, submit_lat, ev_lat, aloop_lat, csubmit_lat, aev_lat;
  std::uint64_t ev_runs = 0, aev_runs = 0;
  {
    atask::Supervisor sv(
        {.id = "lat", .pool_size = 2, .min_threads = 2, .prespawn = true, .logger = quiet()});
    sv.start();
    Signal sig;
    long seq = 0;
    auto ev = atask::event_worker(sv, [&sig] { sig.raise(clk::now()); }, {.name = "lat-event"});
    auto aev = atask::event_worker(sv,
                                   [&sig]() -> asio::awaitable<void> {
                                     sig.raise(clk::now());
                                     co_return;
                                   },
                                   {.name = "lat-async-event"});
    ev->start();
    aev->start();
    auto loop = sv.default_aloop().get_executor();
    const int per = lat_samples / lat_rounds;
    for (int r = 0; r < lat_rounds; ++r) {
      shots(per, sig, seq, post_lat,
            [&] { sv.pool().post(atask::Priority::normal, [&sig] { sig.raise(clk::now()); }); });
      shots(per, sig, seq, submit_lat,
            [&] { static_cast<void>(sv.submit({}, [&sig] { sig.raise(clk::now()); })); });
      shots(per, sig, seq, ev_lat, [&] { ev->trigger(); });
      shots(per, sig, seq, aloop_lat, [&] { asio::post(loop, [&sig] { sig.raise(clk::now()); }); });
      shots(per, sig, seq, csubmit_lat, [&] {
        static_cast<void>(sv.submit({}, [&sig]() -> asio::awaitable<void> {
          sig.raise(clk::now());
          co_return;
        }));
      });
      shots(per, sig, seq, aev_lat, [&] { aev->trigger(); });
    }
    std::this_thread::sleep_for(5ms);
    ev_runs = ev->info().runs;
    aev_runs = aev->info().runs;
    ev->stop();
    aev->stop();
    sv.stop();
  }

  // ============ 5. background_task throughput =========================================
  std::vector<double> bg_kept, bg_dropped, bg_post;
  {
    atask::Supervisor sv({.id = "bgtask", .pool_size = 2, .logger = quiet()});
    sv.start();
    auto empty = atask::background_task(sv, [] {});
    for (int r = 0; r < runs; ++r) {
      {
        std::vector<atask::TaskHandle<void>> hs;
        hs.reserve(bg_tasks);
        const auto t0 = clk::now();
        for (long i = 0; i < bg_tasks; ++i) hs.push_back(empty());
        for (auto& h : hs) h.wait();
        hs.clear();  // releasing the handles is part of the cost
        bg_kept.push_back(bg_tasks / secs(clk::now() - t0));
      }
      {
        // Handles dropped at once; the callable counts completions.
        Done done(bg_tasks);
        auto counted = atask::background_task(sv, [&done] { done.hit(); });
        const auto t0 = clk::now();
        for (long i = 0; i < bg_tasks; ++i) static_cast<void>(counted());
        done.gate.wait();
        bg_dropped.push_back(bg_tasks / secs(clk::now() - t0));
      }
      {
        Done done(bg_tasks);
        const auto t0 = clk::now();
        for (long i = 0; i < bg_tasks; ++i) sv.pool().post(atask::Priority::normal, [&done] { done.hit(); });
        done.gate.wait();
        bg_post.push_back(bg_tasks / secs(clk::now() - t0));
      }
    }
    sv.stop();
  }

  // ============ 2. interval drift (last: 3 x ticks x 10 ms of wall time) ===============
  // Warm start for all three: pool threads and loop threads are running
  // before the clock starts (this measures drift, not a cold start).
  Drift wd, bd, bh;
  {
    atask::Supervisor sv(
        {.id = "drift", .pool_size = 2, .min_threads = 2, .prespawn = true, .logger = quiet()});
    sv.start();
    sv.submit({}, [] {}).wait();
    std::vector<clk::time_point> starts;
    starts.reserve(ticks);
    Gate gate;
    auto w = atask::interval_worker(sv,
                                    [&]() -> bool {
                                      starts.push_back(clk::now());
                                      if (static_cast<int>(starts.size()) < ticks) return true;
                                      gate.open();
                                      return false;  // stops the worker
                                    },
                                    {.name = "drift", .interval = interval});
    const auto t_start = clk::now();
    w->start();  // schedules start() + k * interval; the first run at once
    gate.wait();
    w->wait_stopped_for(10s);
    wd = drift_of(starts, t_start, interval);
    wd.skipped = w->info().skipped_ticks;

    // Baseline B: a steady_timer on its own loop whose handler posts the run
    // to this supervisor's pool - the two thread hops a blocking interval
    // executor needs (timer thread, then a pool thread), without the worker.
    asio::io_context ctx;
    auto guard = asio::make_work_guard(ctx);
    std::thread th([&] { ctx.run(); });
    asio::steady_timer timer(ctx);
    std::vector<clk::time_point> hop(ticks);
    Done done(ticks);
    clk::time_point due;
    int k = 0;
    std::function<void()> tick = [&] {
      const int i = k++;
      sv.pool().post(atask::Priority::normal, [&hop, &done, i] {
        hop[i] = clk::now();
        done.hit();
      });
      if (k == ticks) return;
      due += interval;
      timer.expires_at(due);
      timer.async_wait([&](boost::system::error_code ec) {
        if (!ec) tick();
      });
    };
    const auto t_hop = clk::now();
    due = t_hop;
    asio::post(ctx, tick);
    done.gate.wait();
    guard.reset();
    th.join();
    bh = drift_of(hop, t_hop, interval);
    sv.stop();
  }
  {
    // Baseline A: the timer's handler is the run, on the timer's own thread.
    asio::io_context ctx;
    auto guard = asio::make_work_guard(ctx);
    std::thread th([&] { ctx.run(); });
    asio::steady_timer timer(ctx);
    std::vector<clk::time_point> starts;
    starts.reserve(ticks);
    clk::time_point due;
    std::function<void()> run = [&] {
      starts.push_back(clk::now());
      if (static_cast<int>(starts.size()) == ticks) return;
      due += interval;  // expires_at(prev + 10ms)
      timer.expires_at(due);
      timer.async_wait([&](boost::system::error_code ec) {
        if (!ec) run();
      });
    };
    std::this_thread::sleep_for(1ms);
    const auto t_start = clk::now();
    due = t_start;
    asio::post(ctx, run);  // the first run at once, like the worker's
    guard.reset();
    th.join();
    bd = drift_of(starts, t_start, interval);
  }

  // ============ report ===================================================================
  const double ev50 = ev_lat.p(.5), ev99 = ev_lat.p(.99), po50 = post_lat.p(.5), po99 = post_lat.p(.99);
  const double aev50 = aev_lat.p(.5), aev99 = aev_lat.p(.99), al50 = aloop_lat.p(.5), al99 = aloop_lat.p(.99);
  const double bk = median(bg_kept), bdr = median(bg_dropped), bp = median(bg_post);

  rows.push_back({"1. EventWorker trigger->start p50 (us)", num("%.1f", ev50), num("%.1f", po50),
                  ratio(ev50, po50), "<= 20", yes(ev50 <= 20)});
  rows.push_back({"   EventWorker trigger->start p99 (us)", num("%.1f", ev99), num("%.1f", po99),
                  ratio(ev99, po99), "<= 100", yes(ev99 <= 100)});
  rows.push_back({"   AsyncEventWorker trigger->start p50 (us)", num("%.1f", aev50), num("%.1f", al50),
                  ratio(aev50, al50), "<= 20", yes(aev50 <= 20)});
  rows.push_back({"   AsyncEventWorker trigger->start p99 (us)", num("%.1f", aev99), num("%.1f", al99),
                  ratio(aev99, al99), "<= 100", yes(aev99 <= 100)});
  rows.push_back({"   EventWorker p50 vs Supervisor::submit (us)", num("%.1f", ev50),
                  num("%.1f", submit_lat.p(.5)), ratio(ev50, submit_lat.p(.5)), "", ""});
  rows.push_back({"   EventWorker p99 vs Supervisor::submit (us)", num("%.1f", ev99),
                  num("%.1f", submit_lat.p(.99)), ratio(ev99, submit_lat.p(.99)), "", ""});
  rows.push_back({"   AsyncEventWorker p50 vs coroutine submit (us)", num("%.1f", aev50),
                  num("%.1f", csubmit_lat.p(.5)), ratio(aev50, csubmit_lat.p(.5)), "", ""});
  rows.push_back({"   AsyncEventWorker p99 vs coroutine submit (us)", num("%.1f", aev99),
                  num("%.1f", csubmit_lat.p(.99)), ratio(aev99, csubmit_lat.p(.99)), "", ""});
  rows.push_back({"   trigger() call p50 vs post() call: blocking (us)",
                  num("%.1f", percentile(ev_lat.call_us, .5)), num("%.1f", percentile(post_lat.call_us, .5)),
                  "", "", ""});
  rows.push_back({"   trigger() call p50 vs post() call: coroutine (us)",
                  num("%.1f", percentile(aev_lat.call_us, .5)),
                  num("%.1f", percentile(aloop_lat.call_us, .5)), "", "", ""});
  rows.push_back({"   trigger() call p50 vs submit() call: blocking (us)",
                  num("%.1f", percentile(ev_lat.call_us, .5)),
                  num("%.1f", percentile(submit_lat.call_us, .5)), "", "", ""});
  rows.push_back({"   trigger() call p50 vs submit() call: coroutine (us)",
                  num("%.1f", percentile(aev_lat.call_us, .5)),
                  num("%.1f", percentile(csubmit_lat.call_us, .5)), "", "", ""});
  rows.push_back({"2. interval 10ms total drift (us)", num("%.1f", wd.total_drift_us),
                  num("%.1f", bd.total_drift_us), "", "|d| < 1000",
                  yes(std::fabs(wd.total_drift_us) < 1000)});
  rows.push_back({"   tick lateness p50 (us)", num("%.1f", wd.p50_late_us), num("%.1f", bd.p50_late_us),
                  ratio(wd.p50_late_us, bd.p50_late_us), "", ""});
  rows.push_back({"   tick lateness p99 (us)", num("%.1f", wd.p99_late_us), num("%.1f", bd.p99_late_us),
                  ratio(wd.p99_late_us, bd.p99_late_us), "", ""});
  rows.push_back({"   tick lateness max (us)", num("%.1f", wd.max_late_us), num("%.1f", bd.max_late_us),
                  ratio(wd.max_late_us, bd.max_late_us), "", ""});
  rows.push_back({"   first run (at start(), no timer) late (us)", num("%.1f", wd.first_late_us),
                  num("%.1f", bd.first_late_us), "", "", ""});
  rows.push_back(
      {"   baseline B timer+pool().post: drift (us)", "", num("%.1f", bh.total_drift_us), "", "", ""});
  rows.push_back({"   baseline B lateness p50 (us)", num("%.1f", wd.p50_late_us), num("%.1f", bh.p50_late_us),
                  ratio(wd.p50_late_us, bh.p50_late_us), "", ""});
  rows.push_back({"   baseline B lateness p99 (us)", num("%.1f", wd.p99_late_us), num("%.1f", bh.p99_late_us),
                  ratio(wd.p99_late_us, bh.p99_late_us), "", ""});
  rows.push_back({"3. idle event worker, RSS per worker (KiB)", num("%.2f", w_kib), num("%.2f", c_kib),
                  ratio(w_kib, c_kib), "<= 1.5", yes(w_kib <= 1.5)});
  rows.push_back({"   heap (malloc) per worker (bytes)", num("%.0f", w_heap_b), num("%.0f", c_heap_b),
                  ratio(w_heap_b, c_heap_b), "", ""});
  rows.push_back({"   idle thread on a cv, RSS per thread (KiB)", "", num("%.2f", t_kib), "", "", ""});
  rows.push_back({"   stop all: request_stop() each + wait (ms)", num("%.1f", stop_nowait_ms),
                  num("%.1f", coro_cancel_ms), ratio(stop_nowait_ms, coro_cancel_ms), "< 100",
                  yes(stop_nowait_ms < 100)});
  rows.push_back({"   stop all: stop() each in turn (ms)", num("%.1f", stop_wait_each_ms), "", "", "< 100",
                  yes(stop_wait_each_ms < 100)});
  rows.push_back({"   Supervisor::stop() with all active (ms)", num("%.1f", sv_stop_ms),
                  num("%.1f", sv_stop_empty_ms), ratio(sv_stop_ms, sv_stop_empty_ms), "< 100",
                  yes(sv_stop_ms < 100)});
  rows.push_back({"5. background_task, handles kept (tasks/s)", num("%.0f", bk), num("%.0f", bp),
                  ratio(bk, bp), ">= 500000", yes(bk >= 500'000)});
  rows.push_back({"   background_task, handles dropped (tasks/s)", num("%.0f", bdr), num("%.0f", bp),
                  ratio(bdr, bp), ">= 500000", yes(bdr >= 500'000)});

  const std::string load_end = loadavg();
  std::printf("\natask worker benchmarks (%s); load average at start %s, at end %s (2 cores)\n",
              quick ? "quick" : "full", load_start.c_str(), load_end.c_str());
  std::printf(
      "  1: %d one-at-a-time shots per series in %d interleaved rounds, 1 ms idle before each; baselines: "
      "pool().post() (blocking) and asio::post() to the same aloop (coroutine); also next to "
      "Supervisor::submit() of the same executor (what a trigger submits); call = time inside "
      "trigger()/post()\n"
      "  2: %d ticks at 10 ms, warm threads; baseline A: asio::steady_timer re-armed with expires_at(prev + "
      "10ms) "
      "on its own thread, run in its handler; baseline B: the same timer posting each run to pool().post(); "
      "lateness = run start - (t_start + k*10ms)\n"
      "  3: %d workers; baselines: %d idle coroutines on steady_timers (stop: cancel all, wait for all to "
      "end), "
      "%d threads on a cv (RSS only)\n"
      "  4: queue workers: see bench_queue\n"
      "  5: %ld calls, 2 pool threads (kept: timed until all waited and released); baseline: pool().post() "
      "of the same count on the same supervisor; median of "
      "%d\n\n",
      lat_samples, lat_rounds, ticks, idle_workers, idle_coros, idle_threads, bg_tasks, runs);
  std::printf("%-52s %11s %11s %8s %11s %5s\n", "metric", "atask", "baseline", "ratio", "target", "met?");
  for (auto& r : rows)
    std::printf("%-52s %11s %11s %8s %11s %5s\n", r.metric.c_str(), r.atask.c_str(), r.base.c_str(),
                r.ratio.c_str(), r.target.c_str(), r.met.c_str());
  std::printf(
      "\n  workers: create %d %.1f ms (first half %.1f ms, second half %.1f ms), start %.1f ms, restart %.1f "
      "ms, "
      "destroy %.1f ms (second half %.1f ms, first half %.1f ms); executor runs while idle: %llu (want 0)\n"
      "  RSS deltas: workers %ld KiB, coroutines %ld KiB, threads %ld KiB; skipped ticks: %llu; "
      "event runs %llu/%d, async event runs %llu/%d; thread-baseline stop %.1f ms\n\n",
      idle_workers, create_ms, create_first_half_ms, create_ms - create_first_half_ms, start_ms, restart_ms,
      destroy_ms, destroy_second_half_ms, destroy_ms - destroy_second_half_ms, (unsigned long long)idle_runs,
      w_rss, c_rss, t_rss, (unsigned long long)wd.skipped, (unsigned long long)ev_runs,
      lat_samples / lat_rounds * lat_rounds, (unsigned long long)aev_runs,
      lat_samples / lat_rounds * lat_rounds, thread_stop_ms);

  std::printf(
      "{\"bench\":\"workers\",\"quick\":%s,"
      "\"trigger_latency_us\":{\"event\":{\"p50\":%.2f,\"p99\":%.2f},\"pool_post\":{\"p50\":%.2f,\"p99\":%."
      "2f},"
      "\"async_event\":{\"p50\":%.2f,\"p99\":%.2f},\"aloop_post\":{\"p50\":%.2f,\"p99\":%.2f},"
      "\"submit\":{\"p50\":%.2f,\"p99\":%.2f},\"submit_coroutine\":{\"p50\":%.2f,\"p99\":%.2f},"
      "\"call_p50\":{\"trigger\":%.2f,\"pool_post\":%.2f,\"async_trigger\":%.2f,\"aloop_post\":%.2f},"
      "\"samples\":%d},"
      "\"interval\":{\"ticks\":%d,\"worker\":{\"drift_us\":%.1f,\"p50_late_us\":%.1f,\"p99_late_us\":%.1f,"
      "\"max_late_us\":%.1f,\"first_late_us\":%.1f,\"skipped\":%llu},\"asio_timer\":{\"drift_us\":%.1f,"
      "\"p50_late_us\":%.1f,\"p99_late_us\":%.1f,\"max_late_us\":%.1f,\"first_late_us\":%.1f},"
      "\"timer_pool_hop\":{\"drift_us\":%.1f,\"p50_late_us\":%.1f,\"p99_late_us\":%.1f,\"max_late_us\":%.1f}}"
      ","
      "\"idle\":{\"workers\":%d,\"worker_kib\":%.3f,\"worker_heap_bytes\":%.0f,\"coroutine_kib\":%.3f,"
      "\"coroutine_heap_bytes\":%.0f,\"thread_kib\":%.2f,\"stop_nowait_then_wait_ms\":%.2f,"
      "\"stop_wait_each_ms\":%.2f,\"supervisor_stop_ms\":%.2f,\"supervisor_stop_empty_ms\":%.2f,"
      "\"coroutine_cancel_ms\":%.2f,\"create_ms\":%.1f,\"destroy_ms\":%.1f},"
      "\"background_task\":{\"tasks\":%ld,\"kept_handles\":%.0f,\"dropped_handles\":%.0f,\"pool_post\":%.0f},"
      "\"runs\":%d,\"loadavg\":{\"start\":\"%s\",\"end\":\"%s\"}}\n",
      quick ? "true" : "false", ev50, ev99, po50, po99, aev50, aev99, al50, al99, submit_lat.p(.5),
      submit_lat.p(.99), csubmit_lat.p(.5), csubmit_lat.p(.99), percentile(ev_lat.call_us, .5),
      percentile(post_lat.call_us, .5), percentile(aev_lat.call_us, .5), percentile(aloop_lat.call_us, .5),
      lat_samples, ticks, wd.total_drift_us, wd.p50_late_us, wd.p99_late_us, wd.max_late_us, wd.first_late_us,
      (unsigned long long)wd.skipped, bd.total_drift_us, bd.p50_late_us, bd.p99_late_us, bd.max_late_us,
      bd.first_late_us, bh.total_drift_us, bh.p50_late_us, bh.p99_late_us, bh.max_late_us, idle_workers,
      w_kib, w_heap_b, c_kib, c_heap_b, t_kib, stop_nowait_ms, stop_wait_each_ms, sv_stop_ms,
      sv_stop_empty_ms, coro_cancel_ms, create_ms, destroy_ms, bg_tasks, bk, bdr, bp, runs,
      load_start.c_str(), load_end.c_str());
  return 0;
}
