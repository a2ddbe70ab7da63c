#include <atask/atask.hpp>

#include <doctest/doctest.h>

#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_SUITE("smoke") {
  TEST_CASE("a submitted task returns its result") {
    atask::Supervisor sv({.id = "smoke", .pool_size = 2});
    sv.start();
    auto t = sv.submit(
        {}, [](int a, int b) { return a + b; }, 2, 3);
    CHECK(t.get_for(10s) == 5);
    auto co = sv.submit({}, []() -> asio::awaitable<int> { co_return 7; });
    CHECK(co.get_for(10s) == 7);
    auto r = sv.stop();
    CHECK(r.completed);
  }
}

TEST_SUITE("smoke") {
  TEST_CASE("a coroutine task can submit and await another coroutine task on the same aloop") {
    atask::Supervisor sv({.id = "nested", .pool_size = 2});
    sv.start();
    auto outer = sv.submit({}, [&sv]() -> asio::awaitable<int> {
      auto inner = sv.submit({}, []() -> asio::awaitable<int> { co_return 20; });
      int v = co_await inner.async_get(asio::use_awaitable);
      co_return v + 1;
    });
    REQUIRE(outer.wait_for(10s));
    CHECK(outer.get() == 21);
    CHECK(outer.info().queued_at.has_value());
    sv.stop();
  }
}
