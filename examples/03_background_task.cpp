// 03: background_task() - atasker's decorator in C++. The same factory wraps
// a blocking callable (runs on the pool) and a coroutine (runs on an aloop).
#include <atask/atask.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main() {
  atask::Supervisor sv({.id = "factory"});
  sv.start();
  auto square = atask::background_task(sv, [](int x) { return x * x; }, {.priority = atask::Priority::high});
  auto later = atask::background_task(sv, [](int x) -> asio::awaitable<int> {
    asio::steady_timer t(co_await asio::this_coro::executor, 20ms);
    co_await t.async_wait(asio::use_awaitable);  // waits without holding a thread
    co_return x + 1;
  });
  auto a = square(12);
  auto b = later(41);
  std::printf("square(12) = %d on the pool, later(41) = %d on aloop '%s'\n", a.get(), b.get(),
              sv.default_aloop().name().c_str());
  sv.stop();
}
