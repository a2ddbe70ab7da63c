// Batch queue workers: an executor that takes a std::span<T> of what is
// queued, up to QueueOptions::max_batch items per call; and how a queue
// worker's run shares its pool thread.

#include <atask/workers.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using atask::WorkerContext;

using namespace test;

namespace {

// Holds an executor call until the test opens it (opened at scope exit too).
struct Gate {
  Event entered, release;
  OpenOnExit open{&release};
  void hold() {
    entered.set();
    REQUIRE(release.wait_for());
  }
};

// The batches an executor saw, in order.
class Batches {
 public:
  void add(std::span<const int> b) {
    std::lock_guard lk(m_);
    seen_.emplace_back(b.begin(), b.end());
  }
  std::vector<std::vector<int>> get() const {
    std::lock_guard lk(m_);
    return seen_;
  }

 private:
  mutable std::mutex m_;
  std::vector<std::vector<int>> seen_;
};

// A subclass: what users write instead of the factory.
class Summer : public atask::BatchQueueWorker<int> {
 public:
  using BasicWorker::BasicWorker;
  long sum = 0;  // one executor call at a time
  std::size_t largest = 0;

 protected:
  bool run(std::span<int> items, WorkerContext&) override {
    largest = std::max(largest, items.size());
    for (int x : items) sum += x;
    return true;
  }
};

}  // namespace

TEST_SUITE("workers") {
  TEST_CASE("a batch queue worker gets what is queued in one call and at most max_batch items") {
    StartedSupervisor sv(options("qb"));
    Gate gate;
    Batches batches;
    auto w = atask::queue_worker<int>(sv,
                                      [&](std::span<int> items) {
                                        batches.add(items);
                                        if (items.front() == 0) gate.hold();
                                      },
                                      {.max_batch = 4});
    static_assert(std::is_base_of_v<atask::BatchQueueWorker<int>, std::remove_reference_t<decltype(*w)>>);
    w->start();
    w->put(0);  // the first call holds while the rest queues up
    REQUIRE(gate.entered.wait_for());
    for (int i = 1; i <= 10; ++i) w->put(i);
    CHECK(w->size() == 10);
    gate.release.set();
    w->stop();  // drains
    CHECK(batches.get() == std::vector<std::vector<int>>{{0}, {1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10}});
    CHECK(w->info().runs == 4);  // one executor call per batch
  }

  TEST_CASE("a batch executor may move the items out of its span") {
    StartedSupervisor sv(options("qbmove"));
    std::vector<std::string> kept;
    auto w = atask::queue_worker<std::string>(sv, [&](std::span<std::string> items, WorkerContext&) {
      for (auto& s : items) kept.push_back(std::move(s));
    });
    w->start();
    for (const char* s : {"a", "bb", "a string longer than the small-string buffer"}) w->put(s);
    w->stop();
    CHECK(kept == std::vector<std::string>{"a", "bb", "a string longer than the small-string buffer"});
  }

  TEST_CASE("a batch queue worker subclass sums a million items") {
    StartedSupervisor sv(options("qbsub"));
    auto w = atask::make_worker<Summer>(sv, {.max_batch = 1000});
    w->start();
    const long n = 1'000'000;
    for (long i = 1; i <= n; ++i) w->put(static_cast<int>(i));
    w->stop();
    CHECK(w->sum == n * (n + 1) / 2);
    CHECK(w->largest <= 1000);
    CHECK(w->info().runs < std::uint64_t(n));  // batched: fewer calls than items
  }

  TEST_CASE("a max_batch of 0 is an options error") {
    atask::Supervisor sv(options("qbzero"));
    CHECK(contains(what_of<atask::OptionsError>([&] {
                     auto w = atask::queue_worker<int>(sv, [](std::span<int>) {}, {.max_batch = 0});
                   }),
                   "BatchQueueWorker() - max_batch must be >= 1"));
  }

  TEST_CASE("a priority batch queue worker gets the smallest items first") {
    StartedSupervisor sv(options("qbprio"));
    Gate gate;
    Batches batches;
    auto w = atask::queue_worker<int>(sv,
                                      [&](std::span<int> items) {
                                        if (items.front() == -1) {
                                          gate.hold();
                                          return;
                                        }
                                        batches.add(items);
                                      },
                                      {.order = atask::QueueOrder::priority, .max_batch = 3});
    w->start();
    w->put(-1);
    REQUIRE(gate.entered.wait_for());
    for (int i : {5, 3, 9, 1, 7, 3}) w->put(i);
    gate.release.set();
    w->stop();
    CHECK(batches.get() == std::vector<std::vector<int>>{{1, 3, 3}, {5, 7, 9}});
  }

  TEST_CASE("a stop waits for the batch in progress and hands back what is still queued") {
    StartedSupervisor sv(options("qbhand"));
    Gate gate;
    Batches batches;
    std::vector<int> handed;
    auto w = atask::queue_worker<int>(sv,
                                      [&](std::span<int> items) {
                                        batches.add(items);
                                        if (items.front() == 0) gate.hold();
                                      },
                                      {.on_stop = atask::QueueStop::hand_back,
                                       .on_hand_back = [&](std::vector<int> items) { handed = items; },
                                       .max_batch = 8});
    w->start();
    w->put(0);
    REQUIRE(gate.entered.wait_for());
    for (int i : {1, 2, 3}) w->put(i);
    w->request_stop();
    gate.release.set();
    REQUIRE(w->wait_stopped_for(patience));
    CHECK(batches.get() == std::vector<std::vector<int>>{{0}});
    CHECK(handed == std::vector<int>{1, 2, 3});
  }

  TEST_CASE("a batch executor that returns false stops the worker and the rest is handed back") {
    StartedSupervisor sv(options("qbfalse"));
    Gate gate;
    auto w = atask::queue_worker<int>(sv,
                                      [&](std::span<int> items) {
                                        if (items.front() == 0) gate.hold();
                                        return false;
                                      },
                                      {.max_batch = 2});
    w->start();
    w->put(0);
    REQUIRE(gate.entered.wait_for());
    for (int i : {1, 2, 3}) w->put(i);
    gate.release.set();
    REQUIRE(w->wait_stopped_for(patience));
    CHECK(w->take_unprocessed() == std::vector<int>{1, 2, 3});
  }

  TEST_CASE("a batch executor that throws counts one error per call and the worker goes on") {
    StartedSupervisor sv(options("qbthrow"));
    Gate gate;
    Batches batches;
    std::vector<std::string> errors;
    auto w = atask::queue_worker<int>(
        sv,
        [&](std::span<int> items) {
          if (items.front() == 0) gate.hold();
          batches.add(items);
          if (items.front() == 1) throw std::runtime_error("bad batch");
        },
        {.on_error = [&](const atask::WorkerError& e) { errors.push_back(e.message); }, .max_batch = 2});
    w->start();
    w->put(0);
    REQUIRE(gate.entered.wait_for());
    for (int i : {1, 2, 3}) w->put(i);
    gate.release.set();
    w->stop();
    CHECK(batches.get() == std::vector<std::vector<int>>{{0}, {1, 2}, {3}});
    REQUIRE(errors.size() == 1);
    CHECK(contains(errors[0], "bad batch"));
    CHECK(w->info().errors == 1);
    CHECK(w->info().runs == 3);
  }

  TEST_CASE("a full bounded queue takes puts again once a batch has emptied it") {
    StartedSupervisor sv(options("qbcap"));
    Gate gate;
    Batches batches;
    auto w = atask::queue_worker<int>(sv,
                                      [&](std::span<int> items) {
                                        batches.add(items);
                                        if (items.front() == 0) gate.hold();
                                      },
                                      {.capacity = 3, .max_batch = 8});
    w->start();
    w->put(0);
    REQUIRE(gate.entered.wait_for());
    for (int i : {1, 2, 3}) w->put(i);
    int four = 4;
    CHECK_FALSE(w->try_put(four));  // full
    // Three async puts wait for room; one batch frees every place at once.
    std::vector<std::future<void>> waits;
    for (int i : {4, 5, 6}) waits.push_back(w->async_put(i, asio::use_future));
    gate.release.set();
    for (auto& f : waits) REQUIRE(f.wait_for(patience) == std::future_status::ready);
    w->stop();
    std::vector<int> all;
    for (auto& b : batches.get()) all.insert(all.end(), b.begin(), b.end());
    CHECK(all == std::vector<int>{0, 1, 2, 3, 4, 5, 6});
    CHECK(batches.get()[1] == std::vector<int>{1, 2, 3});
  }

  TEST_CASE("an async batch queue worker runs its coroutine executor on the aloop") {
    StartedSupervisor sv(options("aqb"));
    auto& loop = sv.create_aloop("q");
    std::atomic<long> sum{0};
    std::atomic<bool> wrong_thread{false};
    auto w = atask::queue_worker<int>(sv,
                                      [&](std::span<int> items, WorkerContext&) -> asio::awaitable<void> {
                                        if (!loop.on_thread()) wrong_thread = true;
                                        co_await asio::post(co_await asio::this_coro::executor,
                                                            asio::use_awaitable);
                                        for (int x : items) sum += x;  // the span outlives the suspension
                                      },
                                      {.aloop = "q", .max_batch = 16});
    static_assert(
        std::is_base_of_v<atask::AsyncBatchQueueWorker<int>, std::remove_reference_t<decltype(*w)>>);
    w->start();
    for (int i = 1; i <= 1000; ++i) w->put(i);
    w->stop();
    CHECK(sum.load() == 500'500);
    CHECK_FALSE(wrong_thread.load());
  }

  TEST_CASE("a busy queue worker gives its pool thread back while items remain") {
    StartedSupervisor sv(options("qslice", 1));  // one pool thread for the worker and the task
    Gate gate;
    std::atomic<long> done{0};
    auto w = atask::queue_worker<int>(sv, [&](int x) {
      if (x == 0) gate.hold();
      done.fetch_add(1, std::memory_order_relaxed);
    });
    w->start();
    w->put(0);
    REQUIRE(gate.entered.wait_for());
    const long n = 200'000;  // several run slices' worth, even without a sanitizer
    for (long i = 1; i <= n; ++i) w->put(static_cast<int>(i));
    std::atomic<long> done_when_task_ran{-1};
    auto task = sv.submit({}, [&] { done_when_task_ran = done.load(); });  // queued behind the run
    gate.release.set();
    REQUIRE(task.wait_for(patience));
    w->stop();
    CHECK(done.load() == n + 1);
    CHECK(done_when_task_ran.load() >= 1);
    CHECK(done_when_task_ran.load() < n + 1);  // ran while items remained
  }
}
