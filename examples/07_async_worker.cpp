// 07: AsyncWorker - the same loop with a coroutine executor, on an aloop: it
// waits on timers and sockets without holding a pool thread. The factory
// picks AsyncWorker when the callable returns asio::awaitable<...>.
#include <atask/atask.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main() {
  atask::Supervisor sv({.id = "async"});
  sv.start();
  sv.create_aloop("net");

  int pings = 0;
  auto pinger = atask::background_worker(
      sv,
      [&](atask::WorkerContext& ctx) -> asio::awaitable<bool> {
        asio::steady_timer t(co_await asio::this_coro::executor, 10ms);  // stands for a network round trip
        co_await t.async_wait(asio::use_awaitable);
        std::printf("%s: ping %d on aloop 'net'\n", ctx.name.c_str(), ++pings);
        co_return pings < 5;
      },
      {.name = "pinger", .aloop = "net"});
  pinger->start();
  pinger->wait_stopped_for(10s);
  sv.stop();
}
