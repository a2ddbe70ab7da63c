// 13: timers - Celery's apply_interval / apply_after / apply_at on an aloop.
// Each returns an atask::Timer; cancel() or dropping it stops the timer.
#include <atask/atask.hpp>
#include <atask/timer.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdio>
#include <future>

namespace asio = boost::asio;
using namespace std::chrono_literals;

int main() {
  atask::Supervisor sv({.id = "timers"});
  sv.start();

  // every(): fixed rate on the default aloop. A plain callable runs on the
  // aloop's thread, so it must be short.
  atask::Timer beat = atask::every(sv, 200ms, [] { std::puts("beat"); }, {.name = "beat"});

  // A coroutine callable is co_awaited: it may wait without holding the
  // thread. Calls never overlap - ticks due during a call are skipped.
  atask::Timer slow = atask::every(sv, 50ms, [](atask::TimerControl& c) -> asio::awaitable<void> {
    asio::steady_timer pause(co_await asio::this_coro::executor, 120ms);
    co_await pause.async_wait(asio::use_awaitable);
    if (c.runs() == 2) c.cancel();  // the third call ends the series
  });

  // after(): once, after a delay - canceled here before it fires.
  atask::Timer never = atask::after(sv, 10s, [] { std::puts("never printed"); });
  never.cancel();

  // at(): once, at a wall-clock time.
  std::promise<void> finished;
  atask::Timer end = atask::at(sv, std::chrono::system_clock::now() + 1s, [&] { finished.set_value(); });
  finished.get_future().wait();

  beat.cancel();  // no call starts after this returns
  std::printf("beat ran %llu times; slow ran %llu times and skipped %llu ticks\n",
              static_cast<unsigned long long>(beat.runs()), static_cast<unsigned long long>(slow.runs()),
              static_cast<unsigned long long>(slow.skipped()));
  sv.stop();
}
