// Priority-pool benchmarks, each next to its baselines in the same run:
//  1. throughput: N empty tasks from one submitting thread, 2 pool threads,
//     atask (priorities cycling over the four levels) vs boost::asio::thread_pool(2)
//     vs a plain mutex + condition_variable + deque pool written here;
//  2. submit-to-start wake latency on an idle pool, p50/p99 (same three);
//  3. CPU used by an idle pool;
//  4. memory: RSS before and after 1,000,000 supervised tasks with handles.
// Prints a table, then one JSON object on the last line.
//
// Usage: bench_pool [--quick]
//        bench_pool --wake [ROUNDS]   only 2., the three pools alive side by side and
//                                     sampled in turns (ROUNDS x 300 samples each), so
//                                     that the machine's drift falls on all three alike

#include "support.hpp"

#include <atask/atask.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace bench;
using namespace std::chrono_literals;

namespace {

// The baseline a competent engineer writes in ten minutes.
class PlainPool {
 public:
  explicit PlainPool(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~PlainPool() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard lk(m_);
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock lk(m_);
        cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
      f();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// Counts completions; the last one opens the gate.
struct Done {
  explicit Done(long n) : left(n) {}
  void hit() {
    if (left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lk(m);
      open = true;
      cv.notify_all();
    }
  }
  void wait() {
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return open; });
  }
  std::atomic<long> left;
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
};

template <class Post>
double throughput(long n, Post&& post) {
  Done done(n);
  auto t0 = clk::now();
  for (long i = 0; i < n; ++i) post(i, [&done] { done.hit(); });
  done.wait();
  return n / std::chrono::duration<double>(clk::now() - t0).count();
}

// Submit-to-start latency on an idle pool: between samples the pool has long
// finished its bounded spin and sleeps.
template <class Post>
std::vector<double> wake_latency(int samples, Post&& post) {
  std::vector<double> us;
  us.reserve(samples);
  for (int i = 0; i < samples; ++i) {
    std::this_thread::sleep_for(1ms);  // let every thread go to sleep: this measures the wake
    std::promise<clk::time_point> started;
    auto f = started.get_future();
    auto t0 = clk::now();
    post([&started] { started.set_value(clk::now()); });
    us.push_back(std::chrono::duration<double, std::micro>(f.get() - t0).count());
  }
  return us;
}

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

std::shared_ptr<spdlog::logger> quiet() {
  auto l = std::make_shared<spdlog::logger>("bench");
  l->set_level(spdlog::level::warn);
  return l;
}

}  // namespace

// The wake-latency table: p50 and p99 of each pool.
void print_wake(const char* title, const std::vector<double>& asio, const std::vector<double>& plain,
                const std::vector<double>& at) {
  std::printf("%-58s %10s %10s\n", title, "p50", "p99");
  std::printf("%-58s %10.1f %10.1f\n", "boost::asio::thread_pool(2)", percentile(asio, .5),
              percentile(asio, .99));
  std::printf("%-58s %10.1f %10.1f\n", "plain mutex+cv+deque pool(2)", percentile(plain, .5),
              percentile(plain, .99));
  std::printf("%-58s %10.1f %10.1f\n", "atask ThreadPool", percentile(at, .5), percentile(at, .99));
}

// bench_pool --wake: wake latency only, interleaved.
int wake_only(int rounds) {
  atask::ThreadPool at({.limits = {.pool_size = 2, .min_threads = 2}, .prespawn = true, .logger = quiet()});
  at.start();
  boost::asio::thread_pool as(2);
  PlainPool pl(2);
  std::vector<double> lat_atask, lat_asio, lat_plain;
  auto atask_post = [&](auto f) { at.post(atask::Priority::normal, std::move(f)); };
  auto asio_post = [&](auto f) { boost::asio::post(as, std::move(f)); };
  auto plain_post = [&](auto f) { pl.post(std::move(f)); };
  auto add = [](std::vector<double>& to, std::vector<double> from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  for (int r = 0; r < rounds; ++r) {
    // Each round in another order: none always follows the same one.
    switch (r % 3) {
      case 0:
        add(lat_atask, wake_latency(300, atask_post));
        add(lat_asio, wake_latency(300, asio_post));
        add(lat_plain, wake_latency(300, plain_post));
        break;
      case 1:
        add(lat_asio, wake_latency(300, asio_post));
        add(lat_plain, wake_latency(300, plain_post));
        add(lat_atask, wake_latency(300, atask_post));
        break;
      default:
        add(lat_plain, wake_latency(300, plain_post));
        add(lat_atask, wake_latency(300, atask_post));
        add(lat_asio, wake_latency(300, asio_post));
        break;
    }
  }
  as.join();
  print_wake("wake latency on an idle pool (us), interleaved", lat_asio, lat_plain, lat_atask);
  std::printf(
      "{\"bench\":\"pool_wake\",\"samples\":%d,\"atask\":{\"p50\":%.2f,\"p99\":%.2f},"
      "\"asio\":{\"p50\":%.2f,\"p99\":%.2f},\"plain\":{\"p50\":%.2f,\"p99\":%.2f}}\n",
      rounds * 300, percentile(lat_atask, .5), percentile(lat_atask, .99), percentile(lat_asio, .5),
      percentile(lat_asio, .99), percentile(lat_plain, .5), percentile(lat_plain, .99));
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--wake") == 0) return wake_only(argc > 2 ? std::atoi(argv[2]) : 6);
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const long n = quick ? 100'000 : 1'000'000;
  const int runs = quick ? 3 : 5;
  const int samples = quick ? 300 : 2000;

  // 1. throughput ------------------------------------------------------------
  std::vector<double> at, at3, as, pl;
  int atask_threads_seen = 0;
  for (int r = 0; r < runs; ++r) {
    {
      atask::ThreadPool pool({.limits = {.pool_size = 2}, .logger = quiet()});
      pool.start();
      at.push_back(
          throughput(n, [&](long i, auto f) { pool.post(atask::all_priorities[i & 3], std::move(f)); }));
      atask_threads_seen = std::max(atask_threads_seen, pool.info().threads);
    }
    {
      // Without critical tasks: each critical task that finds every thread
      // busy starts one more thread, which is what the row above pays for.
      atask::ThreadPool pool({.limits = {.pool_size = 2}, .logger = quiet()});
      pool.start();
      at3.push_back(
          throughput(n, [&](long i, auto f) { pool.post(atask::all_priorities[i % 3], std::move(f)); }));
    }
    {
      boost::asio::thread_pool pool(2);
      as.push_back(throughput(n, [&](long, auto f) { boost::asio::post(pool, std::move(f)); }));
      pool.join();
    }
    {
      PlainPool pool(2);
      pl.push_back(throughput(n, [&](long, auto f) { pool.post(std::move(f)); }));
    }
  }
  // Supervised tasks with handles (what background_task gives you).
  std::vector<double> sv_rate;
  {
    atask::Supervisor sv({.id = "bench", .pool_size = 2, .logger = quiet()});
    sv.start();
    for (int r = 0; r < runs; ++r) {
      const long m = n / 2;
      std::vector<atask::TaskHandle<void>> hs;
      hs.reserve(m);
      auto t0 = clk::now();
      for (long i = 0; i < m; ++i) hs.push_back(sv.submit({.priority = atask::all_priorities[i & 3]}, [] {}));
      for (auto& h : hs) h.wait();
      sv_rate.push_back(m / std::chrono::duration<double>(clk::now() - t0).count());
    }
    sv.stop();
  }

  // 2. wake latency ------------------------------------------------------------
  std::vector<double> lat_atask, lat_asio, lat_plain;
  {
    atask::ThreadPool pool(
        {.limits = {.pool_size = 2, .min_threads = 2}, .prespawn = true, .logger = quiet()});
    pool.start();
    lat_atask = wake_latency(samples, [&](auto f) { pool.post(atask::Priority::normal, std::move(f)); });
  }
  {
    boost::asio::thread_pool pool(2);
    lat_asio = wake_latency(samples, [&](auto f) { boost::asio::post(pool, std::move(f)); });
    pool.join();
  }
  {
    PlainPool pool(2);
    lat_plain = wake_latency(samples, [&](auto f) { pool.post(std::move(f)); });
  }

  // 3. idle CPU ----------------------------------------------------------------
  double idle_cpu_pct = 0;
  {
    atask::ThreadPool pool(
        {.limits = {.pool_size = 2, .min_threads = 2}, .prespawn = true, .logger = quiet()});
    pool.start();
    throughput(10'000, [&](long i, auto f) { pool.post(atask::all_priorities[i & 3], std::move(f)); });
    const auto idle = quick ? 300ms : 1000ms;
    double c0 = cpu_seconds();
    std::this_thread::sleep_for(idle);
    idle_cpu_pct = 100.0 * (cpu_seconds() - c0) / std::chrono::duration<double>(idle).count();
  }

  // 4. memory stays flat -----------------------------------------------------------
  long rss_before = 0, rss_after = 0, rss_mid = 0;
  std::size_t history_len = 0;
  {
    atask::Supervisor sv({.id = "mem", .pool_size = 2, .history_size = 1000, .logger = quiet()});
    sv.start();
    auto batch = [&](long count) {
      std::vector<atask::TaskHandle<int>> hs;
      hs.reserve(10'000);
      for (long i = 0; i < count; ++i) {
        hs.push_back(sv.submit({}, [i] { return int(i); }));
        if (hs.size() == 10'000) {
          for (auto& h : hs) h.wait();
          hs.clear();
        }
      }
      for (auto& h : hs) h.wait();
    };
    batch(10'000);  // warm up allocator and history
    rss_before = rss_kib();
    batch(n / 2);
    rss_mid = rss_kib();
    batch(n / 2);
    rss_after = rss_kib();
    history_len = sv.tasks().size();
    sv.stop();
  }

  const double at_m = median(at), at3_m = median(at3), as_m = median(as), pl_m = median(pl),
               sv_m = median(sv_rate);
  std::printf("\natask benchmarks (%s): %ld tasks per throughput run, median of %d runs, 2 pool threads\n\n",
              quick ? "quick" : "full", n, runs);
  std::printf("%-58s %14s %10s\n", "throughput (one submitting thread)", "tasks/s", "ratio");
  std::printf("%-58s %14.0f %10s\n", "boost::asio::thread_pool(2) [baseline]", as_m, "1.00x");
  std::printf("%-58s %14.0f %9.2fx\n", "plain mutex+cv+deque pool(2) [baseline]", pl_m, pl_m / as_m);
  std::printf("%-58s %14.0f %9.2fx\n", "atask ThreadPool post, 4 priorities cycling", at_m, at_m / as_m);
  std::printf("%-58s %14s %9.2fx\n", "  atask vs plain pool", "", at_m / pl_m);
  std::printf("%-58s %14.0f %9.2fx\n", "atask ThreadPool post, low/normal/high cycling", at3_m, at3_m / as_m);
  std::printf("%-58s %14s %9.2fx\n", "  atask (no critical) vs plain pool", "", at3_m / pl_m);
  std::printf("%-58s %14.0f %9.2fx\n", "atask Supervisor::submit with TaskHandle (n/2 tasks)", sv_m,
              sv_m / as_m);
  std::printf("  (atask pool threads seen: %d; critical tasks may add threads past pool_size)\n\n",
              atask_threads_seen);
  print_wake("wake latency on an idle pool (us)", lat_asio, lat_plain, lat_atask);
  std::printf("\nidle atask pool (2 threads) CPU use: %.2f%%\n", idle_cpu_pct);
  std::printf(
      "RSS across %ld supervised tasks (history_size 1000): before %ld KiB, halfway %ld KiB, after %ld KiB "
      "(tasks() holds %zu)\n\n",
      n, rss_before, rss_mid, rss_after, history_len);

  std::printf(
      "{\"bench\":\"pool\",\"tasks\":%ld,\"runs\":%d,"
      "\"throughput\":{\"asio\":%.0f,\"plain\":%.0f,\"atask\":%.0f,\"atask_supervised\":%.0f,"
      "\"atask_vs_asio\":%.3f,\"atask_vs_plain\":%.3f,\"atask_3prio\":%.0f,\"atask_3prio_vs_plain\":%.3f},"
      "\"wake_latency_us\":{\"atask\":{\"p50\":%.2f,\"p99\":%.2f},\"asio\":{\"p50\":%.2f,\"p99\":%.2f},"
      "\"plain\":{\"p50\":%.2f,\"p99\":%.2f}},"
      "\"idle_cpu_percent\":%.3f,\"rss_kib\":{\"before\":%ld,\"mid\":%ld,\"after\":%ld},\"history\":%zu}\n",
      n, runs, as_m, pl_m, at_m, sv_m, at_m / as_m, at_m / pl_m, at3_m, at3_m / pl_m,
      percentile(lat_atask, .5), percentile(lat_atask, .99), percentile(lat_asio, .5),
      percentile(lat_asio, .99), percentile(lat_plain, .5), percentile(lat_plain, .99), idle_cpu_pct,
      rss_before, rss_mid, rss_after, history_len);
}
