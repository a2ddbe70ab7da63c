#pragma once
// Raw Redis commands for the distributed tests' checks (and for what no
// atask client would send), on a connection of their own to a RedisServer.

#include "distributed/redis/connection.hpp"
#include "redis_server.hpp"
#include "support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdlib>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace test {

inline std::vector<atask::redis::Reply> redis_calls(const RedisServer& r,
                                                    std::vector<atask::redis::Connection::Command> cs) {
  namespace asio = boost::asio;
  asio::io_context ctx;
  auto fut = asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<std::vector<atask::redis::Reply>> {
        auto c =
            co_await atask::redis::Connection::connect(ctx.get_executor(), atask::redis::parse_url(r.url()));
        co_return co_await c->pipeline(cs);
      },
      asio::use_future);
  ctx.run_for(patience);
  REQUIRE(fut.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  return fut.get();
}

inline atask::redis::Reply redis_call(const RedisServer& r, atask::redis::Connection::Command c) {
  std::vector<atask::redis::Connection::Command> one;
  one.push_back(std::move(c));
  return redis_calls(r, std::move(one)).front();
}

/// The number after `field` (as "cmdstat_hmget:calls=") in INFO `section`;
/// nullopt when Redis does not show the field.
inline std::optional<long long> info_number(const RedisServer& r, const std::string& section,
                                            std::string_view field) {
  const std::string info = redis_call(r, atask::redis::cmd("INFO", section)).str;
  const auto at = info.find(field);
  if (at == std::string::npos) return std::nullopt;
  return std::atoll(info.c_str() + at + field.size());
}

/// Redis's clock (TIME), in ms.
inline long long redis_now_ms(const RedisServer& r) {
  const auto t = redis_call(r, atask::redis::cmd("TIME"));
  return std::stoll(t.elements.at(0).str) * 1000 + std::stoll(t.elements.at(1).str) / 1000;
}

/// Every entry `stream` was ever given (XINFO STREAM's entries-added), or -1.
inline long long entries_added(const RedisServer& r, const std::string& stream) {
  const auto x = redis_call(r, atask::redis::cmd("XINFO", "STREAM", stream));
  for (std::size_t i = 0; i + 1 < x.elements.size(); i += 2)
    if (x.elements[i].str == "entries-added") return x.elements[i + 1].integer;
  return -1;
}

}  // namespace test
