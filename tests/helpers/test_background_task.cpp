#include <atask/background_task.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using atask::Priority;
using atask::TaskKind;
using atask::TaskStatus;

using namespace test;

namespace {}  // namespace

TEST_SUITE("background_task") {
  TEST_CASE("a wrapped callable submits a task with the bound priority and name") {
    StartedSupervisor sv(options("bt"));
    auto add = atask::background_task(sv, [](int a, int b) { return a + b; },
                                      {.priority = Priority::high, .name = "adder"});
    auto t = add(2, 3);
    static_assert(std::is_same_v<decltype(t), atask::TaskHandle<int>>);
    CHECK(t.priority() == Priority::high);
    CHECK(t.name() == "adder");
    CHECK(t.kind() == TaskKind::thread);
    REQUIRE(t.wait_for(patience));
    CHECK(t.get() == 5);
    CHECK(t.status() == TaskStatus::completed);
    CHECK(add.options().priority == Priority::high);
    CHECK(add.options().name == "adder");
    CHECK(sv.info().tasks.submitted[atask::index(Priority::high)] == 1);
  }

  TEST_CASE("every call of a wrapped callable is a new task with its own arguments") {
    StartedSupervisor sv(options("btmany"));
    auto square = atask::background_task(sv, [](int x) { return x * x; });
    std::vector<atask::TaskHandle<int>> hs;
    for (int i = 0; i < 20; ++i) hs.push_back(square(i));
    for (int i = 0; i < 20; ++i) CHECK(hs[i].get_for(patience) == i * i);
    CHECK(hs[0].id() != hs[1].id());
    CHECK(hs[0].priority() == Priority::normal);  // TaskOptions defaults
    CHECK(hs[0].name().empty());
  }

  TEST_CASE("a wrapped callable may be called from many threads") {
    StartedSupervisor sv(options("btthreads"));
    auto twice = atask::background_task(sv, [](int x) { return 2 * x; });
    std::vector<std::vector<atask::TaskHandle<int>>> per(4);
    {
      std::vector<std::jthread> callers;
      for (int c = 0; c < 4; ++c)
        callers.emplace_back([&, c] {
          for (int i = 0; i < 50; ++i) per[c].push_back(twice(c * 100 + i));
        });
    }
    for (int c = 0; c < 4; ++c)
      for (int i = 0; i < 50; ++i) CHECK(per[c][i].get_for(patience) == 2 * (c * 100 + i));
  }

  TEST_CASE("with overrides the options for one call only") {
    StartedSupervisor sv(options("btwith"));
    auto greet = atask::background_task(sv, [](std::string who) { return "hello " + who; },
                                        {.priority = Priority::low, .name = "greet"});
    auto once = greet.with({.priority = Priority::critical, .name = "urgent"}, std::string("you"));
    CHECK(once.priority() == Priority::critical);
    CHECK(once.name() == "urgent");
    CHECK(once.get_for(patience) == "hello you");
    auto usual = greet("me");
    CHECK(usual.priority() == Priority::low);
    CHECK(usual.name() == "greet");
    CHECK(usual.get_for(patience) == "hello me");
  }

  TEST_CASE("a callable taking a stop_token first gets its task's token") {
    Event entered;
    StartedSupervisor sv(options("bttoken", 1));
    auto wait_then = atask::background_task(sv, [&](std::stop_token st, int v) {
      entered.set();
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lk(m);
      cv.wait_for(lk, st, patience, [] { return false; });
      return st.stop_requested() ? v : -1;  // -1: the token was never requested
    });
    auto t = wait_then(8);
    REQUIRE(entered.wait_for());
    CHECK(t.cancel());
    REQUIRE(t.wait_for(patience));
    CHECK(t.status() == TaskStatus::completed);
    CHECK(t.get() == 8);
  }

  TEST_CASE("a callable returning an awaitable becomes a coroutine task on the default aloop") {
    StartedSupervisor sv(options("btco", 1));
    auto where = atask::background_task(sv,
                                        [](int add) -> asio::awaitable<std::pair<std::thread::id, int>> {
                                          asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
                                          co_await timer.async_wait(asio::use_awaitable);
                                          co_return std::pair{std::this_thread::get_id(), 40 + add};
                                        },
                                        {.name = "coro"});
    auto t = where(2);
    static_assert(std::is_same_v<decltype(t), atask::TaskHandle<std::pair<std::thread::id, int>>>);
    CHECK(t.kind() == TaskKind::coroutine);
    CHECK(t.name() == "coro");
    REQUIRE(t.wait_for(patience));
    auto [id, v] = t.get();
    CHECK(v == 42);
    CHECK(id == sv.default_aloop().thread_id());
  }

  TEST_CASE("the aloop option runs a coroutine task on the named aloop") {
    StartedSupervisor sv(options("btnamed", 1));
    atask::Aloop& x = sv.create_aloop("x");
    auto where = atask::background_task(
        sv, []() -> asio::awaitable<std::thread::id> { co_return std::this_thread::get_id(); },
        {.aloop = "x"});
    auto t = where();
    CHECK(t.kind() == TaskKind::coroutine);
    CHECK(t.get_for(patience) == x.thread_id());
    // the default aloop is another thread (and only now created)
    auto elsewhere = where.with({});
    CHECK(elsewhere.get_for(patience) == sv.default_aloop().thread_id());
    CHECK(x.thread_id() != sv.default_aloop().thread_id());
  }

  TEST_CASE("the delay option queues the task only after the delay") {
    StartedSupervisor sv(options("btdelay", 1));
    auto stamp =
        atask::background_task(sv, [] { return std::chrono::steady_clock::now(); }, {.delay = 100ms});
    const auto t0 = std::chrono::steady_clock::now();
    auto t = stamp();
    REQUIRE(t.wait_for(patience));
    auto i = t.info();
    REQUIRE(i.queued_at.has_value());
    REQUIRE(i.started_at.has_value());
    CHECK(*i.queued_at - t0 >= 100ms);
    CHECK(t.get() - t0 >= 100ms);
  }

  TEST_CASE("a delayed task holds no pool slot while it waits") {
    StartedSupervisor sv(options("btslot", 1));
    auto later = atask::background_task(sv, [] { return 1; }, {.delay = 1h})();
    CHECK(later.status() == TaskStatus::delayed);
    auto now = sv.submit({}, [] { return 2; });
    REQUIRE(now.wait_for(patience));  // the only slot is free
    CHECK(now.get() == 2);
    CHECK(sv.info().pool.queued_total == 0);
    CHECK(sv.tasks(TaskStatus::delayed).size() == 1);
    CHECK(later.cancel());
    CHECK(later.status() == TaskStatus::canceled);
    CHECK_THROWS_AS(later.get_for(patience), atask::TaskCanceled);
  }

  TEST_CASE("a task that throws fails and get rethrows its exception") {
    StartedSupervisor sv(options("btfail", 1));
    auto boom = atask::background_task(
        sv, [](int code) -> int { throw std::runtime_error("boom " + std::to_string(code)); });
    auto t = boom(7);
    REQUIRE(t.wait_for(patience));
    CHECK(t.status() == TaskStatus::failed);
    CHECK_THROWS_WITH_AS(t.get(), "boom 7", std::runtime_error);
    CHECK(t.info().error == "boom 7");
    CHECK(t.error() != nullptr);
  }

  TEST_CASE("a coroutine task that throws fails and get rethrows its exception") {
    StartedSupervisor sv(options("btcofail", 1));
    auto boom = atask::background_task(sv, []() -> asio::awaitable<int> {
      throw std::logic_error("co boom");
      co_return 0;
    });
    auto t = boom();
    REQUIRE(t.wait_for(patience));
    CHECK(t.status() == TaskStatus::failed);
    CHECK_THROWS_WITH_AS(t.get(), "co boom", std::logic_error);
    CHECK(t.info().error == "co boom");
  }

  TEST_CASE("calling a wrapped callable on a stopped supervisor throws LifecycleError") {
    atask::Supervisor sv(options("btstopped", 1));
    auto one = atask::background_task(sv, [] { return 1; });
    CHECK_THROWS_AS((void)one(), atask::LifecycleError);
    sv.start();
    CHECK(one().get_for(patience) == 1);
    sv.stop();
    CHECK_THROWS_WITH_AS((void)one(), doctest::Contains("Supervisor::submit()"), atask::LifecycleError);
  }
}
