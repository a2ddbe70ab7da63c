// WorkerInfo::last_error and last_error_at: what a worker's executor threw
// last, and when.
#include <atask/workers.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("workers: info keeps the executor's last error and when it happened") {
  test::StartedSupervisor sv(test::options("last-error"));
  std::atomic<int> calls{0};
  auto ev = atask::event_worker(sv,
                                [&] {
                                  const int n = ++calls;
                                  if (n == 1) throw std::runtime_error("disk full");
                                  if (n == 3) throw std::runtime_error("disk still full");
                                },
                                {.name = "flaky"});
  CHECK(ev->info().last_error.empty());
  CHECK_FALSE(ev->info().last_error_at);
  ev->start();

  const auto before = std::chrono::system_clock::now();
  REQUIRE(ev->trigger());
  REQUIRE(test::eventually([&] { return ev->info().errors == 1; }));
  const auto first = ev->info();
  CHECK(test::contains(first.last_error, "disk full"));
  REQUIRE(first.last_error_at);
  CHECK(*first.last_error_at >= before);
  CHECK(*first.last_error_at <= std::chrono::system_clock::now());

  // A call that goes well leaves it: it is the last error, not the last call.
  REQUIRE(ev->trigger());
  REQUIRE(test::eventually([&] { return ev->info().runs == 2; }));
  CHECK(ev->info().last_error == first.last_error);
  CHECK(ev->info().last_error_at == first.last_error_at);

  REQUIRE(ev->trigger());
  REQUIRE(test::eventually([&] { return ev->info().errors == 2; }));
  const auto second = ev->info();
  CHECK(test::contains(second.last_error, "disk still full"));
  REQUIRE(second.last_error_at);
  CHECK(*second.last_error_at >= *first.last_error_at);
  // A stop keeps it too.
  ev->stop();
  CHECK(ev->info().last_error == second.last_error);
}

TEST_CASE("workers: a call ended by the worker's stop is not a last error") {
  test::StartedSupervisor sv(test::options("last-error-stop"));
  test::Event entered;
  auto bg = atask::background_worker(
      sv,
      [&]() -> asio::awaitable<void> {
        entered.set();
        asio::steady_timer t(co_await asio::this_coro::executor, 1h);
        co_await t.async_wait(asio::use_awaitable);  // the stop aborts the wait: it throws
      },
      {.name = "sleeper"});
  bg->start();
  REQUIRE(entered.wait_for());
  bg->stop();
  CHECK(bg->info().errors == 0);
  CHECK(bg->info().last_error.empty());
  CHECK_FALSE(bg->info().last_error_at);
}
