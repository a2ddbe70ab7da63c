// Queue worker throughput, each form next to the same baselines measured in
// the same run, interleaved (one repetition of every row, then the next):
//  - put() -> QueueWorker<int> (blocking executor, one call per item),
//  - put() -> AsyncQueueWorker<int> (coroutine executor, one call per item),
//  - put() -> BatchQueueWorker<int> (blocking executor, a std::span of up
//    to max_batch items per call, the default 128),
//  - put() -> AsyncBatchQueueWorker<int> (coroutine executor, spans);
// baseline: the producer/consumer queue a competent engineer writes in ten
// minutes (mutex + condition_variable + deque, one consumer thread popping
// one item per lock); for reference, the same queue whose consumer takes
// everything queued per lock (swaps the deque).
// One producer thread puts N ints 1..N; the time runs from the first put to
// the executor's last item; every run checks the sum.
// Prints a table, then one JSON object on the last line.
//
// Usage: bench_queue [--quick] [--only ROW]   (ROW: item, async_item, batch,
// async_batch, plain, plain_swap; for profiling one row; the table then
// shows 0 for the others)

#include "support.hpp"

#include <atask/atask.hpp>

#include <boost/asio/awaitable.hpp>

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace bench;
namespace asio = boost::asio;

namespace {

// Opened by the consumer once the last item is in.
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

struct Result {
  double rate = 0;
  long long sum = 0;
};

// Puts 1..n into a worker built by make(on_item), whose executor adds to
// `sum` and opens the gate at the n-th item.
template <class Make>
Result run_worker(long n, Make&& make) {
  Result r;
  long count = 0;
  Gate gate;
  auto w = make(r.sum, count, gate);
  w->start();
  const auto t0 = clk::now();
  for (long i = 1; i <= n; ++i) w->put(static_cast<int>(i));
  gate.wait();
  r.rate = n / secs(clk::now() - t0);
  w->stop();
  return r;
}

// The baseline: a consumer thread on a mutex + condition_variable + deque.
// `swap`: the consumer takes everything queued per lock.
Result run_plain(long n, bool swap) {
  std::mutex m;
  std::condition_variable cv;
  std::deque<int> dq;
  Result r;
  const auto t0 = clk::now();
  std::thread consumer([&] {
    std::deque<int> mine;
    for (long count = 0; count < n;) {
      std::unique_lock lk(m);
      cv.wait(lk, [&] { return !dq.empty(); });
      if (swap) {
        mine.swap(dq);
        lk.unlock();
        for (int x : mine) r.sum += x;
        count += static_cast<long>(mine.size());
        mine.clear();
      } else {
        const int x = dq.front();
        dq.pop_front();
        lk.unlock();
        r.sum += x;
        ++count;
      }
    }
  });
  for (long i = 1; i <= n; ++i) {
    {
      std::lock_guard lk(m);
      dq.push_back(static_cast<int>(i));
    }
    cv.notify_one();
  }
  consumer.join();
  r.rate = n / secs(clk::now() - t0);
  return r;
}

std::shared_ptr<spdlog::logger> quiet() {
  auto l = std::make_shared<spdlog::logger>("bench");
  l->set_level(spdlog::level::warn);
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_queue [--quick] [--only ROW]\n");
      return 2;
    }
  }
  auto wanted = [&](const char* row) { return only.empty() || only == row; };
  const long n = quick ? 200'000 : 1'000'000;
  const int runs = quick ? 3 : 5;
  const long long want = static_cast<long long>(n) * (n + 1) / 2;
  const std::string load_start = loadavg();

  std::vector<double> item, async_item, batch, async_batch, plain, plain_swap;
  bool sums_ok = true;
  auto keep = [&](std::vector<double>& v, const char* row, auto&& measure) {
    if (!wanted(row)) return;
    const Result r = measure();
    v.push_back(r.rate);
    sums_ok = sums_ok && r.sum == want;
  };

  atask::Supervisor sv({.id = "queue", .pool_size = 2, .logger = quiet()});
  sv.start();
  for (int r = 0; r < runs; ++r) {
    keep(item, "item", [&] {
      return run_worker(n, [&](long long& sum, long& count, Gate& gate) {
        return atask::queue_worker<int>(sv, [&](int x) {
          sum += x;
          if (++count == n) gate.open();
        });
      });
    });
    keep(async_item, "async_item", [&] {
      return run_worker(n, [&](long long& sum, long& count, Gate& gate) {
        return atask::queue_worker<int>(sv, [&](int x) -> asio::awaitable<void> {
          sum += x;
          if (++count == n) gate.open();
          co_return;
        });
      });
    });
    keep(batch, "batch", [&] {
      return run_worker(n, [&](long long& sum, long& count, Gate& gate) {
        return atask::queue_worker<int>(sv, [&](std::span<int> xs) {
          for (int x : xs) sum += x;
          count += static_cast<long>(xs.size());
          if (count == n) gate.open();
        });
      });
    });
    keep(async_batch, "async_batch", [&] {
      return run_worker(n, [&](long long& sum, long& count, Gate& gate) {
        return atask::queue_worker<int>(sv, [&](std::span<int> xs) -> asio::awaitable<void> {
          for (int x : xs) sum += x;
          count += static_cast<long>(xs.size());
          if (count == n) gate.open();
          co_return;
        });
      });
    });
    keep(plain, "plain", [&] { return run_plain(n, false); });
    keep(plain_swap, "plain_swap", [&] { return run_plain(n, true); });
  }
  sv.stop();

  const double qi = median(item), qa = median(async_item), qb = median(batch), qab = median(async_batch),
               qp = median(plain), qs = median(plain_swap);
  std::printf(
      "\natask queue benchmarks (%s): %ld ints, one producer, median of %d interleaved runs; "
      "load average at start %s, at end %s (2 cores)\n\n",
      quick ? "quick" : "full", n, runs, load_start.c_str(), loadavg().c_str());
  std::printf("%-58s %12s %9s %8s %5s\n", "put -> executor (items/s)", "items/s", "vs bare", "target",
              "met?");
  std::printf("%-58s %12.0f %8.2fx %8s %5s\n", "mutex+cv+deque, one consumer, one item per lock [baseline]",
              qp, 1.0, "", "");
  std::printf("%-58s %12.0f %8.2fx %8s %5s\n", "  the same, consumer takes all queued per lock [reference]",
              qs, qs / qp, "", "");
  std::printf("%-58s %12.0f %8.2fx %8s %5s\n", "QueueWorker<int>, one call per item", qi, qi / qp, ">= 0.5x",
              yes(qi / qp >= 0.5));
  std::printf("%-58s %12.0f %8.2fx %8s %5s\n", "AsyncQueueWorker<int>, one call per item", qa, qa / qp, "",
              "");
  std::printf("%-58s %12.0f %8.2fx %8s %5s\n", "BatchQueueWorker<int>, max_batch 128", qb, qb / qp, ">= 0.8x",
              yes(qb / qp >= 0.8));
  std::printf("%-58s %12.0f %8.2fx %8s %5s\n", "AsyncBatchQueueWorker<int>, max_batch 128", qab, qab / qp, "",
              "");
  std::printf("sums %s\n\n", sums_ok ? "ok" : "WRONG");
  std::printf(
      "{\"bench\":\"queue\",\"quick\":%s,\"items\":%ld,\"runs\":%d,\"plain\":%.0f,\"plain_swap\":%.0f,"
      "\"worker\":%.0f,\"async_worker\":%.0f,\"batch_worker\":%.0f,\"async_batch_worker\":%.0f,"
      "\"worker_vs_plain\":%.3f,\"async_worker_vs_plain\":%.3f,\"batch_vs_plain\":%.3f,"
      "\"async_batch_vs_plain\":%.3f,\"sums_ok\":%s}\n",
      quick ? "true" : "false", n, runs, qp, qs, qi, qa, qb, qab, qi / qp, qa / qp, qb / qp, qab / qp,
      sums_ok ? "true" : "false");
  return sums_ok ? 0 : 1;
}
