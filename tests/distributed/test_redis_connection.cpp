// The Redis connection under the distributed mode, against a redis-server
// each test starts for itself (tests/support/redis_server.hpp).
#include "distributed/redis/connection.hpp"

#include <doctest/doctest.h>

#include "fixtures.hpp"
#include "redis_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <future>
#include <string>
#include <vector>

namespace asio = boost::asio;
using atask::redis::cmd;
using atask::redis::Connection;
using atask::redis::Reply;
using namespace std::chrono_literals;
using namespace test;

namespace {

// Runs a coroutine on a fresh io_context in this thread; fails the test
// (instead of hanging) when it has not finished within the patience.
template <class F>
auto run(F f) {
  asio::io_context ctx;
  auto fut = asio::co_spawn(ctx, f(ctx.get_executor()), asio::use_future);
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (fut.wait_for(0s) != std::future_status::ready && std::chrono::steady_clock::now() < deadline)
    ctx.run_one_for(10ms);
  REQUIRE_MESSAGE(fut.wait_for(0s) == std::future_status::ready, "the coroutine did not finish in time");
  return fut.get();
}

asio::awaitable<std::shared_ptr<Connection>> connect(asio::any_io_executor ex, const RedisServer& r) {
  co_return co_await Connection::connect(ex, atask::redis::parse_url(r.url()));
}

}  // namespace

TEST_SUITE("redis connection") {
  TEST_CASE("a connection sends commands and reads their replies, binary-safe") {
    RedisServer redis;
    const std::string binary("a\0b\r\nc", 6);
    const auto got = run([&](asio::any_io_executor ex) -> asio::awaitable<std::vector<Reply>> {
      auto c = co_await connect(ex, redis);
      std::vector<Reply> out;
      out.push_back(co_await c->call(cmd("PING")));
      out.push_back(co_await c->call(cmd("SET", "k", binary)));
      out.push_back(co_await c->call(cmd("GET", "k")));
      out.push_back(co_await c->call(cmd("GET", "missing")));
      out.push_back(co_await c->call(cmd("RPUSH", "l", "1", "2", "3")));
      out.push_back(co_await c->call(cmd("LRANGE", "l", "0", "-1")));
      co_return out;
    });
    REQUIRE(got.size() == 6);
    CHECK(got[0].type == Reply::Type::status);
    CHECK(got[0].str == "PONG");
    CHECK(got[1].str == "OK");
    CHECK(got[2].type == Reply::Type::string);
    CHECK(got[2].str == binary);
    CHECK(got[3].is_nil());
    CHECK(got[4].integer == 3);
    REQUIRE(got[5].elements.size() == 3);
    CHECK(got[5].elements[2].str == "3");
  }

  TEST_CASE("concurrent commands are pipelined and each caller gets its own reply") {
    RedisServer redis;
    constexpr int n = 2000;
    const auto seen = run([&](asio::any_io_executor ex) -> asio::awaitable<std::vector<long long>> {
      auto c = co_await connect(ex, redis);
      std::vector<long long> out(n, -1);
      std::vector<std::future<void>> done;
      for (int i = 0; i < n; ++i)
        done.push_back(asio::co_spawn(
            ex,
            [c, i, &out]() -> asio::awaitable<void> {
              // Each caller sets its own key and reads back its own value.
              co_await c->call(cmd("SET", "k" + std::to_string(i), std::to_string(i * 7)));
              out[i] = std::stoll((co_await c->call(cmd("GET", "k" + std::to_string(i)))).str);
            },
            asio::use_future));
      // Wait for all of them without blocking the loop. They all ran
      // their first step before this first wait: many commands in flight
      // at once on one connection (pipelined), not one after the other.
      asio::steady_timer t(ex);
      std::size_t most_in_flight = 0;
      for (auto& d : done)
        while (d.wait_for(0s) != std::future_status::ready) {
          most_in_flight = std::max(most_in_flight, c->in_flight());
          t.expires_after(1ms);
          co_await t.async_wait(asio::use_awaitable);
        }
      CHECK(most_in_flight > 100);
      for (auto& d : done) d.get();
      co_return out;
    });
    for (int i = 0; i < n; ++i) REQUIRE(seen[i] == i * 7);
  }

  TEST_CASE("pipeline returns replies in order and error replies as values, call throws them") {
    RedisServer redis;
    const auto [replies, error] =
        run([&](asio::any_io_executor ex) -> asio::awaitable<std::pair<std::vector<Reply>, std::string>> {
          auto c = co_await connect(ex, redis);
          std::vector<Connection::Command> batch{cmd("SET", "a", "1"), cmd("INCR", "a"),
                                                 cmd("LPUSH", "a", "x"), cmd("GET", "a")};
          auto r = co_await c->pipeline(std::move(batch));
          std::string what;
          try {
            co_await c->call(cmd("LPUSH", "a", "x"));
          } catch (const atask::BrokerError& e) {
            what = e.what();
          }
          co_return std::pair{r, what};
        });
    REQUIRE(replies.size() == 4);
    CHECK(replies[0].str == "OK");
    CHECK(replies[1].integer == 2);
    CHECK(replies[2].is_error());
    CHECK(contains(replies[2].str, "WRONGTYPE"));
    CHECK(replies[3].str == "2");
    CHECK(contains(error, "LPUSH"));
    CHECK(contains(error, "WRONGTYPE"));
  }

  TEST_CASE("a large reply arrives whole across many reads") {
    RedisServer redis;
    const std::string big(3 * 1024 * 1024 + 17, 'z');
    const auto got = run([&](asio::any_io_executor ex) -> asio::awaitable<std::string> {
      auto c = co_await connect(ex, redis);
      co_await c->call(cmd("SET", "big", big));
      co_return (co_await c->call(cmd("GET", "big"))).str;
    });
    CHECK(got == big);
  }

  TEST_CASE("no server: connect fails with a BrokerError naming the endpoint") {
    unsigned short port = 0;
    {
      RedisServer redis;  // a port that was just free, now closed again
      port = redis.port();
    }
    const auto what = run([&](asio::any_io_executor ex) -> asio::awaitable<std::string> {
      try {
        co_await Connection::connect(ex,
                                     atask::redis::parse_url("redis://127.0.0.1:" + std::to_string(port)));
      } catch (const atask::BrokerError& e) {
        co_return e.what();
      }
      co_return "";
    });
    CHECK(contains(what, "redis://127.0.0.1:" + std::to_string(port)));
    CHECK(contains(what, "cannot connect"));
  }

  TEST_CASE("AUTH: a password from the URL is used and never shown - a wrong one is refused clearly") {
    RedisServer redis({"requirepass s3cret-pw"});
    const std::string base = "127.0.0.1:" + std::to_string(redis.port());
    const auto [ok, wrong, none] = run(
        [&](asio::any_io_executor ex) -> asio::awaitable<std::tuple<std::string, std::string, std::string>> {
          auto c = co_await Connection::connect(ex, atask::redis::parse_url("redis://:s3cret-pw@" + base));
          const std::string pong = (co_await c->call(cmd("PING"))).str;
          std::string wrong_what, none_what;
          try {
            co_await Connection::connect(ex, atask::redis::parse_url("redis://:nope-pw@" + base));
          } catch (const atask::BrokerError& e) {
            wrong_what = e.what();
          }
          auto anon = co_await Connection::connect(ex, atask::redis::parse_url("redis://" + base));
          try {
            co_await anon->call(cmd("GET", "x"));
          } catch (const atask::BrokerError& e) {
            none_what = e.what();
          }
          co_return std::tuple{pong, wrong_what, none_what};
        });
    CHECK(ok == "PONG");
    CHECK(contains(wrong, "AUTH refused"));
    CHECK(contains(wrong, ":***@"));
    CHECK_FALSE(contains(wrong, "nope-pw"));
    CHECK(contains(none, "NOAUTH"));
  }

  TEST_CASE("a server that dies fails the waiting commands with a BrokerError, it does not hang them") {
    RedisServer redis;
    const auto what = run([&](asio::any_io_executor ex) -> asio::awaitable<std::string> {
      auto c = co_await connect(ex, redis);
      auto killer = co_await connect(ex, redis);
      // BLPOP 0 waits forever; the server goes away meanwhile.
      auto waiting = asio::co_spawn(ex, c->call(cmd("BLPOP", "never", "0")), asio::use_future);
      co_await killer->call(cmd("PING"));
      redis.kill();
      asio::steady_timer t(ex);
      while (waiting.wait_for(0s) != std::future_status::ready) {
        t.expires_after(1ms);
        co_await t.async_wait(asio::use_awaitable);
      }
      std::string first;
      try {
        waiting.get();
      } catch (const atask::BrokerError& e) {
        first = e.what();
      }
      CHECK_FALSE(c->is_open());
      std::string after;
      try {
        co_await c->call(cmd("PING"));
      } catch (const atask::BrokerError& e2) {
        after = e2.what();
      }
      co_return first + " | " + after;
    });
    CHECK(contains(what, "the server closed the connection"));
    CHECK(contains(what, "the connection is closed"));
  }

  TEST_CASE("redis URLs parse, and bad ones are options errors that say what is wrong") {
    using atask::redis::parse_url;
    auto e = parse_url("redis://localhost");
    CHECK(e.host == "localhost");
    CHECK(e.port == 6379);
    CHECK(e.db == 0);
    e = parse_url("redis://user:p%40ss@127.0.0.1:7000/3");
    CHECK(e.username == "user");
    CHECK(e.password == "p@ss");
    CHECK(e.host == "127.0.0.1");
    CHECK(e.port == 7000);
    CHECK(e.db == 3);
    CHECK(e.to_string() == "redis://user:***@127.0.0.1:7000/3");
    e = parse_url("redis://:pw@[::1]:6380");
    CHECK(e.host == "::1");
    CHECK(e.port == 6380);
    CHECK(e.password == "pw");
    for (const char* bad : {"http://x", "redis://", "redis://h:0", "redis://h:70000", "redis://h:12x",
                            "redis://h/-1", "redis://[::1", "redis://h/db"})
      CHECK_THROWS_AS(parse_url(bad), atask::OptionsError);
    CHECK(
        contains(what_of<atask::OptionsError>([] { (void)parse_url("redis://:secret@h:99999"); }), "99999"));
    CHECK_FALSE(
        contains(what_of<atask::OptionsError>([] { (void)parse_url("redis://:secret@h:99999"); }), "secret"));
  }
}
