#include <atask/aloop.hpp>

#include <atask/supervisor.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <pthread.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using atask::StopStage;
using atask::TaskStatus;

using namespace test;

namespace {

// Counts live instances, to see when a coroutine frame is destroyed.
struct Alive {
  std::atomic<int>& n;
  explicit Alive(std::atomic<int>& c) : n(c) { ++n; }
  ~Alive() { --n; }
  Alive(const Alive&) = delete;
  Alive& operator=(const Alive&) = delete;
};

// Suspends for an hour (i.e. until canceled or destroyed), after saying so.
asio::awaitable<void> suspend_long(std::atomic<int>& alive, std::promise<void>& suspended) {
  Alive a(alive);
  asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
  suspended.set_value();
  co_await timer.async_wait(asio::use_awaitable);
}

// A coroutine task body that suspends for an hour, after saying so.
auto long_wait(std::promise<void>& suspended) {
  return [&suspended]() -> asio::awaitable<int> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
    suspended.set_value();
    co_await timer.async_wait(asio::use_awaitable);
    co_return 1;
  };
}

}  // namespace

// Convention (a): create_aloop takes AloopOptions, not a bare bool.
template <class S>
constexpr bool create_aloop_takes_a_bool = requires(S& s) {
  s.create_aloop("x", true);
};
static_assert(!create_aloop_takes_a_bool<atask::Supervisor>);

TEST_SUITE("aloop") {
  // -- Aloop alone -----------------------------------------------------------------

  TEST_CASE("an aloop runs coroutines spawned on its executor on its own thread") {
    atask::Aloop loop("solo");
    CHECK(loop.name() == "solo");
    CHECK_FALSE(loop.running());
    loop.start();
    CHECK(loop.running());
    std::promise<std::thread::id> ran;
    auto f = ran.get_future();
    asio::co_spawn(
        loop.get_executor(),
        []() -> asio::awaitable<std::thread::id> { co_return std::this_thread::get_id(); },
        [&](std::exception_ptr, std::thread::id id) { ran.set_value(id); });
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    const auto id = f.get();
    CHECK(id == loop.thread_id());
    CHECK(id != std::this_thread::get_id());
    CHECK_FALSE(loop.on_thread());
    loop.stop();
    CHECK_FALSE(loop.running());
  }

  TEST_CASE("an aloop's thread id is known as soon as start returns") {
    atask::Aloop loop("tid");
    CHECK(loop.thread_id() == std::thread::id{});
    loop.start();
    const auto id = loop.thread_id();
    CHECK(id != std::thread::id{});
    std::promise<std::thread::id> seen;
    auto f = seen.get_future();
    asio::post(loop.get_executor(), [&] { seen.set_value(std::this_thread::get_id()); });
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(f.get() == id);
  }

  TEST_CASE("an aloop starts once and a second stop is a no-op") {
    atask::Aloop loop("once");
    loop.start();
    CHECK_THROWS_WITH_AS(loop.start(), doctest::Contains("Aloop::start()"), atask::LifecycleError);
    loop.stop();
    loop.stop();
    CHECK_FALSE(loop.running());
    CHECK_THROWS_WITH_AS(loop.start(), doctest::Contains("'once'"), atask::LifecycleError);
    CHECK_THROWS_WITH_AS(loop.get_executor(), doctest::Contains("Aloop::get_executor()"),
                         atask::LifecycleError);
    CHECK_THROWS_WITH_AS(loop.spawn([]() -> asio::awaitable<void> { co_return; }(), {}),
                         doctest::Contains("stopped"), atask::LifecycleError);
  }

  TEST_CASE("spawn on an aloop that is not started throws LifecycleError") {
    atask::Aloop loop("idle");
    CHECK_THROWS_WITH_AS(loop.spawn([]() -> asio::awaitable<void> { co_return; }(), {}),
                         doctest::Contains("not started"), atask::LifecycleError);
  }

  TEST_CASE("work handed to an aloop before start runs once it starts") {
    atask::Aloop loop("later");
    std::promise<int> ran;
    auto f = ran.get_future();
    asio::post(loop.get_executor(), [&] { ran.set_value(7); });
    loop.start();
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(f.get() == 7);
  }

  TEST_CASE("stop from the aloop's own thread throws LifecycleError") {
    atask::Aloop loop("self");
    loop.start();
    std::promise<std::string> result;
    auto f = result.get_future();
    asio::post(loop.get_executor(), [&] {
      CHECK(loop.on_thread());
      result.set_value(what_of<atask::LifecycleError>([&] { loop.stop(); }));
    });
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(contains(f.get(), "Aloop::stop()"));
    CHECK(loop.running());
    loop.stop();
  }

  TEST_CASE("stopping an aloop destroys the coroutines still suspended on it") {
    std::atomic<int> alive{0};
    std::promise<void> suspended;
    auto f = suspended.get_future();
    bool ended = false;
    atask::Aloop loop("frames");
    loop.start();
    asio::co_spawn(loop.get_executor(), suspend_long(alive, suspended),
                   [&](std::exception_ptr) { ended = true; });
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(alive == 1);
    loop.stop();
    CHECK(alive == 0);
    CHECK_FALSE(ended);  // destroyed, not resumed
  }

  TEST_CASE("destroying a running aloop stops it and destroys its suspended coroutines") {
    std::atomic<int> alive{0};
    std::promise<void> suspended;
    auto f = suspended.get_future();
    {
      atask::Aloop loop("scoped");
      loop.start();
      asio::co_spawn(loop.get_executor(), suspend_long(alive, suspended), [](std::exception_ptr) {});
      REQUIRE(f.wait_for(patience) == std::future_status::ready);
      CHECK(alive == 1);
    }
    CHECK(alive == 0);
  }

  TEST_CASE("an aloop thread is named after the aloop and cut to 15 characters") {
    for (std::string name : {"net", "a-very-long-aloop-name"}) {
      CAPTURE(name);
      atask::Aloop loop(name);
      loop.start();
      std::promise<std::string> seen;
      auto f = seen.get_future();
      asio::post(loop.get_executor(), [&] { seen.set_value(thread_name()); });
      REQUIRE(f.wait_for(patience) == std::future_status::ready);
      CHECK(f.get() == name.substr(0, 15));
      loop.stop();
    }
  }

  // -- aloops of a supervisor --------------------------------------------------------

  TEST_CASE("create_aloop creates a running aloop that aloop finds by name") {
    StartedSupervisor sv(options("al", 1));
    atask::Aloop& net = sv.create_aloop("net");
    CHECK(net.name() == "net");
    CHECK(net.running());
    CHECK(&sv.aloop("net") == &net);
    auto i = sv.info();
    REQUIRE(i.aloops.size() == 1);
    CHECK(i.aloops[0].name == "net");
    CHECK(i.aloops[0].running);
    CHECK_FALSE(i.aloops[0].is_default);
  }

  TEST_CASE("create_aloop with a taken name throws Error") {
    StartedSupervisor sv(options("dup", 1));
    atask::Aloop& first = sv.create_aloop("net");
    CHECK_THROWS_WITH_AS(sv.create_aloop("net"), doctest::Contains("'net'"), atask::Error);
    CHECK_THROWS_AS(sv.create_aloop(""), atask::Error);
    CHECK(&sv.aloop("net") == &first);
    CHECK(sv.info().aloops.size() == 1);
  }

  TEST_CASE("aloop with an unknown name throws Error") {
    StartedSupervisor sv(options("unknown", 1));
    CHECK_THROWS_WITH_AS(sv.aloop("nope"), doctest::Contains("Supervisor::aloop()"), atask::Error);
    CHECK_THROWS_WITH_AS(sv.stop_aloop("nope"), doctest::Contains("'nope'"), atask::Error);
    auto msg = what_of<atask::Error>(
        [&] { (void)sv.submit({.aloop = "nope"}, []() -> asio::awaitable<int> { co_return 1; }); });
    CHECK(contains(msg, "'nope'"));
    CHECK(sv.info().active_tasks == 0);
  }

  TEST_CASE("naming an aloop for a task that does not run on one is an OptionsError") {
    StartedSupervisor sv(options("aloop-plain", 1));
    sv.create_aloop("net");
    std::atomic<int> ran{0};
    auto msg = what_of<atask::OptionsError>([&] { (void)sv.submit({.aloop = "net"}, [&] { ++ran; }); });
    CHECK(contains(msg, "Supervisor::submit()"));
    CHECK(contains(msg, "'net'"));
    CHECK(contains(msg, "does not return an awaitable"));
    // Nothing was registered or run; a coroutine task may name the aloop.
    CHECK(sv.info().active_tasks == 0);
    CHECK(sv.submit({.aloop = "net"}, []() -> asio::awaitable<int> { co_return 5; }).get_for(patience) == 5);
    CHECK(ran.load() == 0);
  }

  TEST_CASE("an aloop created before start starts with the supervisor") {
    atask::Supervisor sv(options("early", 1));
    atask::Aloop& early = sv.create_aloop("early");
    CHECK_FALSE(early.running());
    sv.start();
    CHECK(early.running());
    auto t = sv.submit({.aloop = "early"},
                       []() -> asio::awaitable<std::thread::id> { co_return std::this_thread::get_id(); });
    CHECK(t.get_for(patience) == early.thread_id());
  }

  TEST_CASE("default_aloop is created on first use") {
    StartedSupervisor sv({.id = "dflt", .pool_size = 1, .default_aloop = "main"});
    CHECK(sv.info().aloops.empty());
    CHECK_THROWS_AS(sv.aloop("main"), atask::Error);
    atask::Aloop& d = sv.default_aloop();
    CHECK(d.name() == "main");
    CHECK(d.running());
    CHECK(&sv.default_aloop() == &d);
    CHECK(&sv.aloop("main") == &d);
    auto i = sv.info();
    REQUIRE(i.aloops.size() == 1);
    CHECK(i.aloops[0].is_default);
  }

  TEST_CASE("a coroutine task without an aloop runs on the default aloop which is created for it") {
    StartedSupervisor sv(options("dfltco", 1));
    auto t =
        sv.submit({}, []() -> asio::awaitable<std::thread::id> { co_return std::this_thread::get_id(); });
    CHECK(t.kind() == atask::TaskKind::coroutine);
    CHECK(t.get_for(patience) == sv.default_aloop().thread_id());
    CHECK(sv.default_aloop().name() == "default");
  }

  TEST_CASE("create_aloop with make_default makes coroutine tasks without an aloop use it") {
    StartedSupervisor sv(options("mkdflt", 1));
    atask::Aloop& main = sv.create_aloop("main", {.make_default = true});
    CHECK(&sv.default_aloop() == &main);
    auto t =
        sv.submit({}, []() -> asio::awaitable<std::thread::id> { co_return std::this_thread::get_id(); });
    CHECK(t.get_for(patience) == main.thread_id());
    auto i = sv.info();
    REQUIRE(i.aloops.size() == 1);
    CHECK(i.aloops[0].name == "main");
    CHECK(i.aloops[0].is_default);
  }

  TEST_CASE("create_aloop without make_default leaves the default aloop alone") {
    StartedSupervisor sv(options("nodflt", 1));
    atask::Aloop& dflt = sv.default_aloop();
    atask::Aloop& side = sv.create_aloop("side", {});
    atask::Aloop& other = sv.create_aloop("other", {.make_default = false});
    CHECK(&sv.default_aloop() == &dflt);
    CHECK(&side != &dflt);
    auto t =
        sv.submit({}, []() -> asio::awaitable<std::thread::id> { co_return std::this_thread::get_id(); });
    CHECK(t.get_for(patience) == dflt.thread_id());
    for (const auto& a : sv.info().aloops) {
      INFO("aloop ", a.name);
      CHECK(a.is_default == (a.name == "default"));
    }
    CHECK(other.running());
  }

  TEST_CASE("a coroutine task runs on its aloop's thread") {
    StartedSupervisor sv(options("onloop", 1));
    atask::Aloop& a = sv.create_aloop("a");
    atask::Aloop& b = sv.create_aloop("b");
    auto where = []() -> asio::awaitable<std::thread::id> { co_return std::this_thread::get_id(); };
    auto on_a = sv.submit({.aloop = "a"}, where);
    auto on_b = sv.submit({.aloop = "b"}, where);
    REQUIRE(on_a.wait_for(patience));
    REQUIRE(on_b.wait_for(patience));
    CHECK(on_a.get() == a.thread_id());
    CHECK(on_b.get() == b.thread_id());
    CHECK(a.thread_id() != b.thread_id());
  }

  TEST_CASE("an aloop thread of a supervisor is named after the aloop") {
    StartedSupervisor sv(options("names", 1));
    sv.create_aloop("a-very-long-aloop-name");
    auto t = sv.submit({.aloop = "a-very-long-aloop-name"},
                       []() -> asio::awaitable<std::string> { co_return thread_name(); });
    CHECK(t.get_for(patience) == "a-very-long-alo");
  }

  TEST_CASE("stop_aloop ends a suspended coroutine task canceled") {
    std::promise<void> suspended;
    auto f = suspended.get_future();
    StartedSupervisor sv(options("stopal", 1));
    sv.create_aloop("net");
    auto t = sv.submit({.aloop = "net", .name = "sleeper"}, long_wait(suspended));
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(t.status() == TaskStatus::started);
    sv.stop_aloop("net");
    REQUIRE(t.done());
    CHECK(t.status() == TaskStatus::canceled);
    CHECK_THROWS_AS(t.get(), atask::TaskCanceled);
    CHECK(contains(t.info().error, "aloop stopped"));
    CHECK_THROWS_AS(sv.aloop("net"), atask::Error);
    CHECK(sv.info().aloops.empty());
    // the name is free again
    CHECK(sv.create_aloop("net").running());
    CHECK(sv.stop().completed);
  }

  TEST_CASE("submitting to a stopped aloop throws LifecycleError") {
    StartedSupervisor sv(options("stopped", 1));
    atask::Aloop& gone = sv.create_aloop("gone");
    gone.stop();
    auto coro = []() -> asio::awaitable<int> { co_return 1; };
    auto msg = what_of<atask::LifecycleError>([&] { (void)sv.submit({.aloop = "gone"}, coro); });
    CHECK(contains(msg, "'gone'"));
    CHECK(contains(msg, "stopped"));
    CHECK(sv.info().active_tasks == 0);
    // after stop_aloop the name is forgotten altogether
    sv.stop_aloop("gone");
    CHECK_THROWS_WITH_AS((void)sv.submit({.aloop = "gone"}, coro), doctest::Contains("'gone'"), atask::Error);
    CHECK(sv.stop().completed);
  }

  TEST_CASE("cancel of a suspended coroutine task aborts the operation it awaits") {
    std::promise<void> suspended;
    auto f = suspended.get_future();
    StartedSupervisor sv(options("cocancel", 1));
    auto t = sv.submit({}, long_wait(suspended));
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(t.cancel());
    REQUIRE(t.wait_for(patience));
    // The terminal cancellation makes async_wait fail with operation_aborted;
    // a task that was asked to stop and ends that way ends canceled.
    CHECK(t.status() == TaskStatus::canceled);
    CHECK_THROWS_WITH_AS((void)t.get(), doctest::Contains("canceled while running"), atask::TaskCanceled);
    CHECK_FALSE(t.cancel());  // already final
  }

  TEST_CASE("a coroutine task can catch its cancellation and return a value") {
    std::promise<void> suspended;
    auto f = suspended.get_future();
    StartedSupervisor sv(options("cocatch", 1));
    auto t = sv.submit({}, [&]() -> asio::awaitable<int> {
      asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
      suspended.set_value();
      try {
        co_await timer.async_wait(asio::use_awaitable);
      } catch (const boost::system::system_error& e) {
        co_return e.code() == asio::error::operation_aborted ? -1 : -2;
      }
      co_return 1;
    });
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(t.cancel());
    REQUIRE(t.wait_for(patience));
    CHECK(t.status() == TaskStatus::completed);
    CHECK(t.get() == -1);
  }

  TEST_CASE("the soft stage cancels a suspended coroutine task") {
    std::promise<void> suspended;
    auto f = suspended.get_future();
    StartedSupervisor sv(options("cosoft", 1));
    auto t = sv.submit({.name = "sleeper"}, long_wait(suspended));
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    auto r = sv.stop({.warm_timeout = 50ms, .soft_timeout = 10s});
    CHECK(r.completed);
    CHECK(r.stage == StopStage::soft);
    CHECK(r.stop_requested == 1);
    CHECK(r.abandoned.empty());
    CHECK(t.status() == TaskStatus::canceled);
    CHECK_THROWS_AS((void)t.get_for(patience), atask::TaskCanceled);
  }

  TEST_CASE("stop from a coroutine task returns at once and block finishes the stop") {
    StartedSupervisor sv(options("costop", 1));
    auto t = sv.submit({}, [&]() -> asio::awaitable<bool> { co_return sv.stop().completed; });
    REQUIRE(t.wait_for(patience));
    CHECK_FALSE(t.get());
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::warm);
  }

  TEST_CASE("block from a coroutine task throws LifecycleError") {
    StartedSupervisor sv(options("coblock", 1));
    auto t = sv.submit({}, [&]() -> asio::awaitable<std::string> {
      co_return what_of<atask::LifecycleError>([&] { sv.block(); });
    });
    REQUIRE(t.wait_for(patience));
    CHECK(contains(t.get(), "Supervisor::block()"));
    CHECK(sv.stop().completed);
  }

  TEST_CASE("a supervisor's aloops stop with it and no new one can be made") {
    StartedSupervisor sv(options("alstop", 1));
    atask::Aloop& net = sv.create_aloop("net");
    CHECK(sv.stop().completed);
    CHECK_FALSE(net.running());
    CHECK_FALSE(sv.info().aloops.at(0).running);
    CHECK_THROWS_WITH_AS(sv.create_aloop("more"), doctest::Contains("Supervisor::create_aloop()"),
                         atask::LifecycleError);
    CHECK_THROWS_AS(sv.default_aloop(), atask::LifecycleError);
  }
}
