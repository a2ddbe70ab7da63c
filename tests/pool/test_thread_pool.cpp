#include <atask/thread_pool.hpp>

#include <atask/errors.hpp>
#include <atask/supervisor.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using atask::Priority;
using atask::ThreadPool;

using namespace test;

namespace {

atask::PoolOptions pool_options(atask::PoolLimits limits) {
  return {.limits = limits, .name = "tp", .logger = quiet_logger()};
}

std::chrono::steady_clock::time_point deadline() {
  return std::chrono::steady_clock::now() + patience;
}

// Posts a task that reports it started, then holds its thread until `open`.
void post_blocker(ThreadPool& pool, Priority p, Event& started, const Event& open) {
  pool.post(p, [&started, &open] {
    started.set();
    open.wait_for();
  });
}

// The same with a shared start counter.
void post_blocker(ThreadPool& pool, Priority p, Counter& started, const Event& open) {
  pool.post(p, [&started, &open] {
    started.bump();
    open.wait_for();
  });
}

int queued(const atask::PoolInfo& i, Priority p) {
  return i.queued[atask::index(p)];
}
int running(const atask::PoolInfo& i, Priority p) {
  return i.running[atask::index(p)];
}

// A posted callable that counts whether it ran or was dropped unrun (its
// destructor runs when the pool releases the node).
struct Tally {
  Counter ran, discarded;
};
class Probe {
 public:
  explicit Probe(Tally& t) : t_(&t) {}
  Probe(Probe&& o) noexcept : t_(std::exchange(o.t_, nullptr)), ran_(o.ran_) {}
  Probe& operator=(Probe&&) = delete;
  ~Probe() {
    if (t_ && !ran_) t_->discarded.bump();
  }
  void operator()() {
    ran_ = true;
    t_->ran.bump();
  }

 private:
  Tally* t_;
  bool ran_ = false;
};

// A pool node a test owns, to drive enqueue()/remove() directly.
class ProbeNode final : public atask::detail::PoolNode {
 public:
  explicit ProbeNode(Priority p) : PoolNode(p) {}
  ~ProbeNode() override = default;
  void run() override { ran.set(); }
  void discard() noexcept override { discarded.store(true); }
  void release() noexcept override { released.fetch_add(1); }

  Event ran;
  std::atomic<bool> discarded{false};
  std::atomic<int> released{0};
};

}  // namespace

// Convention (a): close() and stop() take QueuedTasks, not a bare bool.
template <class P>
constexpr bool stop_takes_a_bool = requires(P& p) {
  p.stop(true);
};
template <class P>
constexpr bool close_takes_a_bool = requires(P& p) {
  p.close(false);
};
static_assert(!stop_takes_a_bool<ThreadPool> && !close_takes_a_bool<ThreadPool>);

TEST_SUITE("thread_pool") {
  // -- admission ---------------------------------------------------------------------

  TEST_CASE("low task starts only while fewer than pool_size tasks run") {
    Event s1, s2, s3, open;
    ThreadPool pool(pool_options({.pool_size = 2, .reserve_normal = 1, .reserve_high = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, s1, open);
    post_blocker(pool, Priority::low, s2, open);
    REQUIRE(s1.wait_for());
    REQUIRE(s2.wait_for());
    post_blocker(pool, Priority::low, s3, open);
    auto i = pool.info();
    CHECK(running(i, Priority::low) == 2);
    CHECK(queued(i, Priority::low) == 1);  // the reserves stay free
    CHECK(i.running_total == 2);
    CHECK_FALSE(s3.is_set());
    open.set();
    REQUIRE(s3.wait_for());
    REQUIRE(pool.wait_idle(deadline()));
    CHECK(pool.info().completed_total == 3);
  }

  TEST_CASE("normal task may use reserve_normal but not reserve_high") {
    Event l1, n1, n2, h1, open;
    ThreadPool pool(pool_options({.pool_size = 1, .reserve_normal = 1, .reserve_high = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, l1, open);
    REQUIRE(l1.wait_for());
    post_blocker(pool, Priority::normal, n1, open);
    REQUIRE(n1.wait_for());  // in reserve_normal
    post_blocker(pool, Priority::normal, n2, open);
    auto i = pool.info();
    CHECK(i.running_total == 2);
    CHECK(queued(i, Priority::normal) == 1);  // reserve_high is not for it
    // The reserve_high slot is really free: a high task takes it.
    post_blocker(pool, Priority::high, h1, open);
    REQUIRE(h1.wait_for());
    i = pool.info();
    CHECK(running(i, Priority::low) == 1);
    CHECK(running(i, Priority::normal) == 1);
    CHECK(running(i, Priority::high) == 1);
    CHECK(queued(i, Priority::normal) == 1);
    CHECK_FALSE(n2.is_set());
    open.set();
    REQUIRE(n2.wait_for());
  }

  TEST_CASE("high task may use reserve_normal and reserve_high but no more") {
    Event l1, h1, h2, h3, open;
    ThreadPool pool(pool_options({.pool_size = 1, .reserve_normal = 1, .reserve_high = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, l1, open);
    REQUIRE(l1.wait_for());
    post_blocker(pool, Priority::high, h1, open);
    post_blocker(pool, Priority::high, h2, open);
    REQUIRE(h1.wait_for());
    REQUIRE(h2.wait_for());
    post_blocker(pool, Priority::high, h3, open);
    auto i = pool.info();
    CHECK(running(i, Priority::high) == 2);
    CHECK(queued(i, Priority::high) == 1);
    CHECK(i.running_total == 3);
    CHECK_FALSE(h3.is_set());
    open.set();
    REQUIRE(h3.wait_for());
  }

  TEST_CASE("a waiting high task takes a freed slot before a waiting normal or low task") {
    Event n1, n2, h, n3, l, open1, open2, open;
    ThreadPool pool(pool_options({.pool_size = 1, .reserve_normal = 1}));
    OpenOnExit guard{&open1, &open2, &open};
    pool.start();
    post_blocker(pool, Priority::normal, n1, open1);
    post_blocker(pool, Priority::normal, n2, open2);
    REQUIRE(n1.wait_for());
    REQUIRE(n2.wait_for());
    post_blocker(pool, Priority::low, l, open);
    post_blocker(pool, Priority::normal, n3, open);
    post_blocker(pool, Priority::high, h, open);
    auto i = pool.info();
    CHECK(queued(i, Priority::low) == 1);
    CHECK(queued(i, Priority::normal) == 1);
    CHECK(queued(i, Priority::high) == 1);
    // One slot frees: the high task gets it, although it came last.
    open1.set();
    REQUIRE(h.wait_for());
    i = pool.info();
    CHECK(running(i, Priority::high) == 1);
    CHECK(queued(i, Priority::normal) == 1);
    CHECK(queued(i, Priority::low) == 1);
    // The next slot goes to the normal task, not to the low one (which also
    // could not use the reserve).
    open2.set();
    REQUIRE(n3.wait_for());
    i = pool.info();
    CHECK(queued(i, Priority::low) == 1);
    CHECK_FALSE(l.is_set());
    open.set();
    REQUIRE(l.wait_for());
  }

  TEST_CASE("queued tasks run in priority order and in submission order within a priority") {
    // BS::thread_pool's test: pause a one-slot pool, submit shuffled
    // priorities, resume, compare the run order.
    Event blocker, open;
    std::mutex m;
    std::vector<std::pair<Priority, int>> order;
    Counter criticals_ran;
    ThreadPool pool(pool_options({.pool_size = 1, .max_threads = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, blocker, open);
    REQUIRE(blocker.wait_for());

    std::vector<Priority> ps;
    for (Priority p : {Priority::low, Priority::normal, Priority::high})
      for (int k = 0; k < 6; ++k) ps.push_back(p);
    ps.push_back(Priority::critical);
    ps.push_back(Priority::critical);
    std::shuffle(ps.begin(), ps.end(), std::mt19937(20240601));

    std::array<int, atask::priority_count> seq{};
    std::vector<std::pair<Priority, int>> expected;
    for (Priority p : ps) {
      const int n = seq[atask::index(p)]++;
      expected.emplace_back(p, n);
      pool.post(p, [&, p, n] {
        std::lock_guard lk(m);
        order.emplace_back(p, n);
        if (p == Priority::critical) criticals_ran.bump();
      });
    }
    // Critical tasks do not wait for the blocked slot.
    REQUIRE(criticals_ran.wait_for_at_least(2));
    auto i = pool.info();
    CHECK(queued(i, Priority::low) == 6);
    CHECK(queued(i, Priority::normal) == 6);
    CHECK(queued(i, Priority::high) == 6);
    CHECK(queued(i, Priority::critical) == 0);

    open.set();
    REQUIRE(pool.wait_idle(deadline()));
    std::stable_sort(expected.begin(), expected.end(),
                     [](auto& a, auto& b) { return atask::index(a.first) > atask::index(b.first); });
    std::lock_guard lk(m);
    REQUIRE(order.size() == expected.size());
    // The two critical tasks ran at once, each on its own thread: in any order.
    CHECK(std::set(order.begin(), order.begin() + 2) == std::set(expected.begin(), expected.begin() + 2));
    CHECK(std::vector(order.begin() + 2, order.end()) == std::vector(expected.begin() + 2, expected.end()));
  }

  TEST_CASE("critical task starts while the pool is full") {
    Event l1, h1, c1, c2, open;
    ThreadPool pool(pool_options({.pool_size = 1, .max_threads = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, l1, open);
    REQUIRE(l1.wait_for());
    post_blocker(pool, Priority::high, h1, open);
    post_blocker(pool, Priority::critical, c1, open);
    REQUIRE(c1.wait_for());
    post_blocker(pool, Priority::critical, c2, open);
    REQUIRE(c2.wait_for());
    auto i = pool.info();
    CHECK(running(i, Priority::critical) == 2);
    CHECK(i.running_total == 3);
    CHECK(i.threads == 3);  // beyond pool_size and max_threads
    CHECK(queued(i, Priority::high) == 1);
    open.set();
    REQUIRE(h1.wait_for());
  }

  TEST_CASE("a thread freed by a critical task above the limits does not take a low task the limits refuse") {
    // The thread that ran the critical task takes the next task in the same
    // stroke only when that task is admissible with its own slot free: here
    // the low task still finds the pool full (the first low task runs).
    Event l1, c, l2, open1, open_c, open2;
    ThreadPool pool(pool_options({.pool_size = 1, .max_threads = 1}));
    OpenOnExit guard{&open1, &open_c, &open2};
    pool.start();
    post_blocker(pool, Priority::low, l1, open1);
    REQUIRE(l1.wait_for());
    post_blocker(pool, Priority::critical, c, open_c);
    REQUIRE(c.wait_for());
    post_blocker(pool, Priority::low, l2, open2);
    open_c.set();
    REQUIRE(eventually([&] { return running(pool.info(), Priority::critical) == 0; }));
    auto i = pool.info();
    CHECK(i.running_total == 1);
    CHECK(queued(i, Priority::low) == 1);
    CHECK(i.completed_total == 1);
    CHECK_FALSE(l2.is_set());
    open1.set();
    REQUIRE(l2.wait_for());
    open2.set();
    REQUIRE(pool.wait_idle(deadline()));
    CHECK(pool.info().completed_total == 3);
  }

  TEST_CASE("a thread that finishes a task takes the next one of a long queue in turn") {
    // Many queued tasks on one thread: each ends and the next starts in the
    // same stroke; the counters must add up at every step and at the end.
    ThreadPool pool(pool_options({.pool_size = 1}));
    Event first, open;
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::normal, first, open);
    REQUIRE(first.wait_for());
    std::mutex m;
    std::vector<int> order;
    const int n = 1000;
    for (int k = 0; k < n; ++k)
      pool.post(k % 2 ? Priority::high : Priority::low, [&, k] {
        std::lock_guard lk(m);
        order.push_back(k);
      });
    open.set();
    REQUIRE(pool.wait_idle(deadline()));
    auto i = pool.info();
    CHECK(i.completed_total == std::uint64_t(n) + 1);
    CHECK(i.running_total == 0);
    CHECK(i.queued_total == 0);
    CHECK(i.running == std::array<int, atask::priority_count>{});
    std::lock_guard lk(m);
    REQUIRE(order.size() == std::size_t(n));
    // Every high task (odd k) before every low one, each in submission order.
    std::vector<int> expected;
    for (int k = 1; k < n; k += 2) expected.push_back(k);
    for (int k = 0; k < n; k += 2) expected.push_back(k);
    CHECK(order == expected);
  }

  TEST_CASE("pool_size 0 is unlimited") {
    Counter started;
    Event open;
    ThreadPool pool(pool_options({.pool_size = 0}));
    OpenOnExit guard{&open};
    pool.start();
    for (int k = 0; k < 20; ++k) post_blocker(pool, Priority::low, started, open);
    REQUIRE(started.wait_for_at_least(20));
    auto i = pool.info();
    CHECK(running(i, Priority::low) == 20);
    CHECK(i.queued_total == 0);
    CHECK(i.threads >= 20);
    open.set();
    REQUIRE(pool.wait_idle(deadline()));
  }

  TEST_CASE("max_threads bounds a pool_size 0 pool and the reserves are carved out of it") {
    // max_threads 4, reserve_normal 1, reserve_high 1: low may use 2 slots,
    // normal 3, high 4.
    Counter low, normal, high;
    Event open;
    ThreadPool pool(pool_options({.pool_size = 0, .reserve_normal = 1, .reserve_high = 1, .max_threads = 4}));
    OpenOnExit guard{&open};
    pool.start();
    for (int k = 0; k < 3; ++k) post_blocker(pool, Priority::low, low, open);
    REQUIRE(low.wait_for_at_least(2));
    CHECK(queued(pool.info(), Priority::low) == 1);
    for (int k = 0; k < 2; ++k) post_blocker(pool, Priority::normal, normal, open);
    REQUIRE(normal.wait_for_at_least(1));
    for (int k = 0; k < 2; ++k) post_blocker(pool, Priority::high, high, open);
    REQUIRE(high.wait_for_at_least(1));
    auto i = pool.info();
    CHECK(running(i, Priority::low) == 2);
    CHECK(running(i, Priority::normal) == 1);
    CHECK(running(i, Priority::high) == 1);
    CHECK(queued(i, Priority::low) == 1);
    CHECK(queued(i, Priority::normal) == 1);
    CHECK(queued(i, Priority::high) == 1);
    CHECK(i.threads == 4);
    CHECK(low.value() == 2);
    CHECK(normal.value() == 1);
    CHECK(high.value() == 1);
    open.set();
    REQUIRE(pool.wait_idle(deadline()));
    CHECK(pool.info().completed_total == 7);
  }

  // -- run-time changes --------------------------------------------------------------

  TEST_CASE("growing the pool at run time starts queued tasks at once") {
    Event l1, l2, l3, open;
    ThreadPool pool(pool_options({.pool_size = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, l1, open);
    REQUIRE(l1.wait_for());
    post_blocker(pool, Priority::low, l2, open);
    post_blocker(pool, Priority::low, l3, open);
    CHECK(queued(pool.info(), Priority::low) == 2);
    pool.resize({.pool_size = 3});
    REQUIRE(l2.wait_for());
    REQUIRE(l3.wait_for());
    auto i = pool.info();
    CHECK(i.limits.pool_size == 3);
    CHECK(i.running_total == 3);
    CHECK(i.queued_total == 0);
  }

  TEST_CASE("shrinking the pool at run time limits new admissions") {
    Counter blockers_started, done;
    Event open;
    std::atomic<int> active{0}, max_seen{0};
    ThreadPool pool(pool_options({.pool_size = 3}));
    OpenOnExit guard{&open};
    pool.start();
    for (int k = 0; k < 3; ++k)
      pool.post(Priority::low, [&] {
        ++active;
        blockers_started.bump();
        open.wait_for();
        --active;  // before the pool frees the slot
      });
    REQUIRE(blockers_started.wait_for_at_least(3));
    pool.resize({.pool_size = 1});
    for (int k = 0; k < 3; ++k)
      pool.post(Priority::low, [&] {
        int now = ++active;
        int seen = max_seen.load();
        while (now > seen && !max_seen.compare_exchange_weak(seen, now)) {
        }
        --active;
        done.bump();
      });
    auto i = pool.info();
    CHECK(i.limits.pool_size == 1);
    CHECK(i.running_total == 3);  // running tasks are not interrupted
    CHECK(queued(i, Priority::low) == 3);
    open.set();
    REQUIRE(done.wait_for_at_least(3));
    // Each of them started only once everything else had finished.
    CHECK(max_seen.load() == 1);
  }

  TEST_CASE("when a task finishes the next admissible one starts") {
    Event l1, l2, open1, open2;
    ThreadPool pool(pool_options({.pool_size = 1}));
    OpenOnExit guard{&open1, &open2};
    pool.start();
    post_blocker(pool, Priority::low, l1, open1);
    REQUIRE(l1.wait_for());
    post_blocker(pool, Priority::low, l2, open2);
    CHECK(queued(pool.info(), Priority::low) == 1);
    open1.set();
    REQUIRE(l2.wait_for());
    auto i = pool.info();
    CHECK(i.completed_total == 1);
    CHECK(i.running_total == 1);
    CHECK(i.queued_total == 0);
  }

  // -- threads -----------------------------------------------------------------------

  TEST_CASE("prespawn starts min_threads threads in start()") {
    ThreadPool pre(
        {.limits = {.pool_size = 4, .min_threads = 2}, .prespawn = true, .logger = quiet_logger()});
    CHECK(pre.info().threads == 0);
    pre.start();
    auto i = pre.info();
    CHECK(i.threads == 2);
    CHECK(i.idle_threads == 2);

    ThreadPool lazy(pool_options({.pool_size = 4, .min_threads = 2}));
    lazy.start();
    CHECK(lazy.info().threads == 0);  // threads start on demand
  }

  TEST_CASE("idle threads above min_threads exit after idle_timeout") {
    Counter started;
    Event open, after;
    ThreadPool pool({.limits = {.pool_size = 4, .min_threads = 1},
                     .prespawn = true,
                     .idle_timeout = 50ms,
                     .logger = quiet_logger()});
    OpenOnExit guard{&open};
    pool.start();
    for (int k = 0; k < 4; ++k) post_blocker(pool, Priority::low, started, open);
    REQUIRE(started.wait_for_at_least(4));
    CHECK(pool.info().threads == 4);
    open.set();
    REQUIRE(pool.wait_idle(deadline()));
    // A test about time: wait (bounded) for the idle timeout to pass.
    CHECK(eventually([&] { return pool.info().threads == 1; }));
    // min_threads stays, however long it idles.
    std::this_thread::sleep_for(200ms);
    CHECK(pool.info().threads == 1);
    // And the pool still works with the threads it has left.
    pool.post(Priority::low, [&] { after.set(); });
    CHECK(after.wait_for());
  }

  TEST_CASE("lowering min_threads at run time lets surplus idle threads exit") {
    ThreadPool pool({.limits = {.pool_size = 4, .min_threads = 3},
                     .prespawn = true,
                     .idle_timeout = 50ms,
                     .logger = quiet_logger()});
    pool.start();
    CHECK(pool.info().threads == 3);
    // A test about time: let the prespawned threads settle into their sleep
    // (several idle timeouts); threads within min_threads never time out.
    std::this_thread::sleep_for(200ms);
    CHECK(pool.info().threads == 3);
    pool.resize({.pool_size = 4, .min_threads = 1});
    CHECK(eventually([&] { return pool.info().threads == 1; }));
    CHECK(pool.info().limits.min_threads == 1);
  }

  TEST_CASE("pool threads are named after the pool") {
    auto thread_name = [](ThreadPool& pool) {
      std::promise<std::string> name;
      auto f = name.get_future();
      pool.post(Priority::normal, [&name] {
        char buf[16] = {};
        pthread_getname_np(pthread_self(), buf, sizeof buf);
        name.set_value(buf);
      });
      REQUIRE(f.wait_for(patience) == std::future_status::ready);
      return f.get();
    };
    ThreadPool pool({.limits = {.pool_size = 1}, .name = "tpnames", .logger = quiet_logger()});
    pool.start();
    auto name = thread_name(pool);
    CHECK(name.rfind("tpnames-", 0) == 0);

    // Linux keeps 15 characters: the pool name's start survives.
    ThreadPool longer(
        {.limits = {.pool_size = 1}, .name = "averyverylongpoolname", .logger = quiet_logger()});
    longer.start();
    CHECK(thread_name(longer) == "averyverylongpo");
  }

  // -- errors ------------------------------------------------------------------------

  TEST_CASE("an exception thrown by a posted task goes to on_error and the pool keeps working") {
    std::promise<std::exception_ptr> error;
    auto got = error.get_future();
    std::atomic<int> errors{0};
    Event after;
    ThreadPool pool({.limits = {.pool_size = 1},
                     .on_error =
                         [&](std::exception_ptr e) {
                           if (errors.fetch_add(1) == 0) error.set_value(e);
                         },
                     .logger = quiet_logger()});
    pool.start();
    pool.post(Priority::normal, [] { throw std::runtime_error("boom"); });
    REQUIRE(got.wait_for(patience) == std::future_status::ready);
    auto e = got.get();
    REQUIRE(e);
    CHECK_THROWS_WITH_AS(std::rethrow_exception(e), "boom", std::runtime_error);
    // The thread that ran it is still in service.
    pool.post(Priority::normal, [&] { after.set(); });
    CHECK(after.wait_for());
    CHECK(errors.load() == 1);
    REQUIRE(pool.wait_idle(deadline()));
    CHECK(pool.info().completed_total == 2);
  }

  TEST_CASE("an on_error handler that throws does not take a pool thread down") {
    Counter handled;
    Event after;
    ThreadPool pool({.limits = {.pool_size = 1},
                     .on_error =
                         [&](std::exception_ptr) {
                           handled.bump();
                           throw std::logic_error("handler fails too");
                         },
                     .logger = quiet_logger()});
    pool.start();
    pool.post(Priority::normal, [] { throw 42; });  // not even a std::exception
    REQUIRE(handled.wait_for_at_least(1));
    pool.post(Priority::normal, [&] { after.set(); });
    CHECK(after.wait_for());
    CHECK(pool.info().threads == 1);
  }

  TEST_CASE("invalid pool options throw OptionsError naming the call and the field") {
    struct Case {
      const char* field;
      atask::PoolLimits limits;
    };
    const std::vector<Case> cases{
        {"pool_size", {.pool_size = -1}},
        {"reserve_normal", {.pool_size = 1, .reserve_normal = -1}},
        {"reserve_high", {.pool_size = 1, .reserve_high = -2}},
        {"min_threads", {.pool_size = 1, .min_threads = -1}},
        {"max_threads", {.pool_size = 1, .max_threads = -1}},
        // the reserves do not fit under max_threads
        {"max_threads", {.pool_size = 2, .reserve_normal = 2, .max_threads = 3}},
        {"max_threads", {.pool_size = 0, .reserve_normal = 1, .reserve_high = 3, .max_threads = 4}},
        {"min_threads", {.pool_size = 2, .min_threads = 5, .max_threads = 4}},
    };
    for (const auto& c : cases) {
      CAPTURE(c.field);
      CHECK_THROWS_WITH_AS(ThreadPool(pool_options(c.limits)), doctest::Contains("ThreadPool::ThreadPool()"),
                           atask::OptionsError);
      CHECK_THROWS_WITH_AS(ThreadPool(pool_options(c.limits)), doctest::Contains(c.field),
                           atask::OptionsError);
    }
    CHECK_THROWS_WITH_AS(ThreadPool({.limits = {.pool_size = 2}, .prespawn = true, .logger = quiet_logger()}),
                         doctest::Contains("prespawn"), atask::OptionsError);
    CHECK_THROWS_WITH_AS(
        ThreadPool({.limits = {.pool_size = 2}, .idle_timeout = -1ms, .logger = quiet_logger()}),
        doctest::Contains("idle_timeout"), atask::OptionsError);

    // resize() validates too, and a rejected resize changes nothing.
    ThreadPool pool(pool_options({.pool_size = 2}));
    pool.start();
    for (const auto& c : cases) {
      CAPTURE(c.field);
      CHECK_THROWS_WITH_AS(pool.resize(c.limits), doctest::Contains("ThreadPool::resize()"),
                           atask::OptionsError);
      CHECK_THROWS_WITH_AS(pool.resize(c.limits), doctest::Contains(c.field), atask::OptionsError);
    }
    CHECK(pool.info().limits.pool_size == 2);
  }

  // -- lifecycle ---------------------------------------------------------------------

  TEST_CASE("post before start and after stop throws LifecycleError") {
    ThreadPool pool(pool_options({.pool_size = 1}));
    Tally t;
    CHECK_THROWS_WITH_AS(pool.post(Priority::normal, Probe(t)), doctest::Contains("not started"),
                         atask::LifecycleError);
    CHECK(t.discarded.value() == 1);  // the refused callable is destroyed, not leaked
    pool.start();
    CHECK_THROWS_WITH_AS(pool.start(), doctest::Contains("ThreadPool::start()"), atask::LifecycleError);
    pool.stop();
    CHECK_THROWS_WITH_AS(pool.post(Priority::normal, Probe(t)), doctest::Contains("stopping or stopped"),
                         atask::LifecycleError);
    CHECK_THROWS_WITH_AS(pool.post(Priority::critical, [] {}), doctest::Contains("'tp'"),
                         atask::LifecycleError);
    CHECK(t.ran.value() == 0);
  }

  TEST_CASE("stop() twice is a no-op") {
    Event ran;
    ThreadPool pool(pool_options({.pool_size = 2}));
    pool.start();
    pool.post(Priority::low, [&] { ran.set(); });
    REQUIRE(ran.wait_for());
    pool.stop();
    CHECK(pool.info().threads == 0);
    CHECK_NOTHROW(pool.stop());
    CHECK_NOTHROW(pool.stop(atask::QueuedTasks::run));
    CHECK_NOTHROW(pool.stop(atask::QueuedTasks::cancel));
    CHECK(pool.info().threads == 0);
  }

  TEST_CASE("stop() from inside a pool task throws LifecycleError") {
    std::promise<std::string> what;
    auto f = what.get_future();
    ThreadPool pool(pool_options({.pool_size = 1}));
    pool.start();
    CHECK_FALSE(pool.on_pool_thread());
    pool.post(Priority::normal, [&] {
      if (!pool.on_pool_thread()) return what.set_value("not on a pool thread");
      try {
        pool.stop();
        what.set_value("no exception");
      } catch (const atask::LifecycleError& e) {
        what.set_value(e.what());
      }
    });
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(contains(f.get(), "ThreadPool::stop()"));
    // The pool was not stopped by the refused call.
    Event after;
    pool.post(Priority::normal, [&] { after.set(); });
    CHECK(after.wait_for());
  }

  TEST_CASE("close(QueuedTasks::run) lets queued tasks run and refuses new ones") {
    Event blocker, open;
    Tally t;
    ThreadPool pool(pool_options({.pool_size = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, blocker, open);
    REQUIRE(blocker.wait_for());
    for (int k = 0; k < 3; ++k) pool.post(Priority::normal, Probe(t));
    pool.close(atask::QueuedTasks::run);
    CHECK(pool.info().queued_total == 3);
    CHECK_THROWS_AS(pool.post(Priority::normal, [] {}), atask::LifecycleError);
    open.set();
    REQUIRE(pool.wait_idle(deadline()));
    CHECK(t.ran.value() == 3);
    CHECK(t.discarded.value() == 0);
    CHECK(pool.info().completed_total == 4);
  }

  TEST_CASE("close(QueuedTasks::cancel) drops queued tasks without running them") {
    Event blocker, open;
    Tally t;
    ThreadPool pool(pool_options({.pool_size = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, blocker, open);
    REQUIRE(blocker.wait_for());
    for (int k = 0; k < 3; ++k) pool.post(Priority::high, Probe(t));
    CHECK(pool.info().queued_total == 3);
    pool.close(atask::QueuedTasks::cancel);
    CHECK(t.discarded.value() == 3);
    auto i = pool.info();
    CHECK(i.queued_total == 0);
    CHECK(i.running_total == 1);  // the running task is left alone
    open.set();
    REQUIRE(pool.wait_idle(deadline()));
    CHECK(t.ran.value() == 0);
    CHECK(pool.info().completed_total == 1);
  }

  TEST_CASE("stop() cancels queued tasks and waits for running ones") {
    Event blocker, open, stopped;
    Tally t;
    std::atomic<bool> blocker_done{false};
    ThreadPool pool(pool_options({.pool_size = 1}));
    pool.start();
    pool.post(Priority::low, [&] {
      blocker.set();
      open.wait_for();
      blocker_done.store(true);
    });
    REQUIRE(blocker.wait_for());
    for (int k = 0; k < 3; ++k) pool.post(Priority::normal, Probe(t));
    std::jthread stopper([&] {
      pool.stop();
      stopped.set();
    });
    OpenOnExit guard{&open};  // destroyed before the stopper is joined
    // stop() dropped the queue (in the stopper's thread) ...
    REQUIRE(t.discarded.wait_for_at_least(3));
    // ... and is still waiting for the running task.
    CHECK_FALSE(stopped.is_set());
    CHECK_FALSE(blocker_done.load());
    open.set();
    REQUIRE(stopped.wait_for());
    CHECK(blocker_done.load());
    CHECK(t.ran.value() == 0);
    CHECK(pool.info().threads == 0);
  }

  // stop() with each QueuedTasks value: the same three tasks queued behind a
  // running one either all run before stop() returns or are all discarded.
  TEST_CASE("stop(QueuedTasks::run) runs the queued tasks, stop(QueuedTasks::cancel) discards them") {
    for (const auto queued : {atask::QueuedTasks::run, atask::QueuedTasks::cancel}) {
      const char* mode = queued == atask::QueuedTasks::run ? "QueuedTasks::run" : "QueuedTasks::cancel";
      CAPTURE(mode);
      Event blocker, open, stopped;
      Tally t;
      ThreadPool pool(pool_options({.pool_size = 1}));
      pool.start();
      post_blocker(pool, Priority::low, blocker, open);
      REQUIRE(blocker.wait_for());
      for (int k = 0; k < 3; ++k) pool.post(Priority::normal, Probe(t));
      std::jthread stopper([&] {
        pool.stop(queued);
        stopped.set();
      });
      {
        OpenOnExit guard{&open};  // destroyed before the stopper is joined
        if (queued == atask::QueuedTasks::cancel) REQUIRE(t.discarded.wait_for_at_least(3));
        CHECK_FALSE(stopped.is_set());  // the blocker still runs
        open.set();
        REQUIRE(stopped.wait_for());
      }
      if (queued == atask::QueuedTasks::run) {
        CHECK(t.ran.value() == 3);
        CHECK(t.discarded.value() == 0);
        CHECK(pool.info().completed_total == 4);
      } else {
        CHECK(t.ran.value() == 0);
        CHECK(t.discarded.value() == 3);
        CHECK(pool.info().completed_total == 1);
      }
      CHECK(pool.info().threads == 0);
    }
  }

  TEST_CASE("remove() takes a queued node out so that it never runs") {
    ProbeNode a(Priority::normal), b(Priority::normal);
    Event blocker, open;
    ThreadPool pool(pool_options({.pool_size = 1}));
    OpenOnExit guard{&open};
    pool.start();
    post_blocker(pool, Priority::low, blocker, open);
    REQUIRE(blocker.wait_for());
    pool.enqueue(&a);
    pool.enqueue(&b);
    CHECK(queued(pool.info(), Priority::normal) == 2);
    CHECK(pool.remove(&a));
    CHECK(a.released.load() == 1);    // the pool dropped its reference ...
    CHECK_FALSE(a.discarded.load());  // ... without a discard (the caller knows)
    CHECK(queued(pool.info(), Priority::normal) == 1);
    CHECK_FALSE(pool.remove(&a));  // not queued any more
    open.set();
    REQUIRE(b.ran.wait_for());
    REQUIRE(pool.wait_idle(deadline()));
    CHECK_FALSE(pool.remove(&b));  // already ran
    CHECK(b.released.load() == 1);
    CHECK_FALSE(a.ran.is_set());
    CHECK(a.released.load() == 1);
  }

  // -- through the supervisor ------------------------------------------------------------

  TEST_CASE("supervisor tasks take a freed slot in priority order") {
    Event blocker, open;
    StartedSupervisor sv(options("tpsv", 1));
    auto b = sv.submit({.priority = Priority::low}, [&] {
      blocker.set();
      return open.wait_for();
    });
    OpenOnExit guard{&open};
    REQUIRE(blocker.wait_for());
    auto low = sv.submit({.priority = Priority::low}, [] { return atask::this_task::id(); });
    auto normal = sv.submit({.priority = Priority::normal}, [] { return atask::this_task::id(); });
    auto high = sv.submit({.priority = Priority::high}, [] { return atask::this_task::id(); });
    auto critical = sv.submit({.priority = Priority::critical}, [] { return atask::this_task::id(); });
    REQUIRE(critical.wait_for(patience));  // while the only slot is taken
    CHECK(b.status() == atask::TaskStatus::started);
    auto i = sv.info().pool;
    CHECK(queued(i, Priority::low) == 1);
    CHECK(queued(i, Priority::normal) == 1);
    CHECK(queued(i, Priority::high) == 1);
    CHECK(low.status() == atask::TaskStatus::queued);
    open.set();
    REQUIRE(low.wait_for(patience));
    CHECK(b.get_for(patience));
    CHECK(low.get() == low.id());
    CHECK(normal.get_for(patience) == normal.id());
    CHECK(high.get_for(patience) == high.id());
    CHECK(critical.get() == critical.id());
    auto started = [](auto& h) { return *h.info().started_at; };
    CHECK(started(critical) < *b.info().finished_at);
    CHECK(started(high) <= started(normal));
    CHECK(started(normal) <= started(low));
    CHECK(sv.stop().completed);
  }
}
