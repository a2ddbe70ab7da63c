#include <atask/task.hpp>

#include <atask/errors.hpp>
#include <atask/supervisor.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using atask::Priority;
using atask::TaskKind;
using atask::TaskStatus;

using namespace test;

namespace {

struct CustomError : std::runtime_error {
  CustomError(const char* what, int c) : std::runtime_error(what), code(c) {}
  int code;
};

}  // namespace

TEST_SUITE("task") {
  // A continuation registered (async_get) just as the task finishes must run:
  // on_done() once read the status before announcing itself, and a finisher
  // publishing in between skipped it for good (seen as a hang under TSan).
  TEST_CASE("async_get registered while the task finishes is never lost") {
    StartedSupervisor sv(options("race"));
    constexpr int n = 20000;
    std::atomic<int> called{0};
    test::Event all;
    boost::asio::io_context ctx;
    auto guard = boost::asio::make_work_guard(ctx);
    std::thread runner([&] { ctx.run(); });
    // Both sides spin a random few microseconds, so that the registration
    // often lands right when the task finishes: the window is nanoseconds.
    auto spin = [](unsigned k) {
      static std::atomic<unsigned> sink{0};  // keeps the loop (a volatile counter is deprecated in C++20)
      for (unsigned x = 0; x < k; ++x) sink.store(x, std::memory_order_relaxed);
    };
    std::uint64_t seed = 88172645463325252ull;
    auto next = [&seed] {
      seed ^= seed << 13;
      seed ^= seed >> 7;
      seed ^= seed << 17;
      return static_cast<unsigned>(seed % 4000);
    };
    for (int i = 0; i < n; ++i) {
      const unsigned work = next();
      auto h = sv.submit({}, [i, work, spin] {
        spin(work);
        return i;
      });
      spin(next());
      h.async_get(boost::asio::bind_executor(ctx, [&](std::exception_ptr, int) {
        if (called.fetch_add(1) + 1 == n) all.set();
      }));
    }
    const bool ok = all.wait_for();
    guard.reset();
    ctx.stop();
    runner.join();
    CHECK(ok);
    CHECK(called.load() == n);
    sv.stop();
  }

  TEST_CASE("a handle reports the task's identity and status and times") {
    Event started, open;
    StartedSupervisor sv(options("tk-ids"));
    OpenOnExit guard{&open};
    auto t = sv.submit({.priority = Priority::high, .name = "answer"}, [&] {
      started.set();
      open.wait_for();
      return 42;
    });
    REQUIRE(started.wait_for());
    CHECK(t.valid());
    CHECK(t.id() > 0);
    CHECK(t.name() == "answer");
    CHECK(t.priority() == Priority::high);
    CHECK(t.kind() == TaskKind::thread);
    CHECK(t.status() == TaskStatus::started);
    CHECK_FALSE(t.done());
    auto i = t.info();
    CHECK(i.id == t.id());
    CHECK(i.status == TaskStatus::started);
    CHECK(i.queued_at.has_value());
    CHECK(i.started_at.has_value());
    CHECK_FALSE(i.finished_at.has_value());

    auto copy = t;  // copies refer to the same task
    CHECK(copy == t);
    CHECK(copy.id() == t.id());
    auto other = sv.submit({}, [] { return 1; });
    CHECK_FALSE(other == t);
    CHECK(other.id() != t.id());
    CHECK(other.priority() == Priority::normal);  // the default
    CHECK(other.get_for(patience) == 1);

    open.set();
    CHECK(t.get_for(patience) == 42);
    CHECK(t.status() == TaskStatus::completed);
    CHECK(copy.status() == TaskStatus::completed);
    CHECK(t.done());
    i = t.info();
    REQUIRE(i.queued_at);
    REQUIRE(i.started_at);
    REQUIRE(i.finished_at);
    CHECK(*i.queued_at <= *i.started_at);
    CHECK(*i.started_at <= *i.finished_at);
    CHECK(i.error.empty());
    CHECK(t.error() == nullptr);
    CHECK(sv.stop().completed);
  }

  TEST_CASE("get() returns the value and rethrows the exception type the task threw") {
    StartedSupervisor sv(options("tk-get"));
    auto ok = sv.submit(
        {}, [](int a, int b) { return a * b; }, 6, 7);
    REQUIRE(ok.wait_for(patience));
    CHECK(ok.get() == 42);
    CHECK(ok.get() == 42);  // the result stays

    auto text = sv.submit({}, [] { return std::string("kept in the task"); });
    REQUIRE(text.wait_for(patience));
    const std::string& ref = text.get();
    CHECK(ref == "kept in the task");

    auto bad = sv.submit({}, []() -> int { throw std::invalid_argument("bad argument"); });
    REQUIRE(bad.wait_for(patience));
    CHECK_THROWS_WITH_AS(bad.get(), "bad argument", std::invalid_argument);
    CHECK_THROWS_AS(bad.get(), std::invalid_argument);  // every time
    CHECK(bad.status() == TaskStatus::failed);
    CHECK(bad.error() != nullptr);
    CHECK(contains(bad.info().error, "bad argument"));

    auto custom = sv.submit({}, [] { throw CustomError("custom", 7); });
    REQUIRE(custom.wait_for(patience));
    try {
      custom.get();
      FAIL("get() did not throw");
    } catch (const CustomError& e) {
      CHECK(e.code == 7);  // the task's own exception object, not a copy into another type
    }
    CHECK(custom.status() == TaskStatus::failed);

    std::atomic<bool> ran{false};
    auto v = sv.submit({}, [&] { ran = true; });
    REQUIRE(v.wait_for(patience));
    v.get();
    CHECK(ran.load());
    CHECK(v.status() == TaskStatus::completed);
  }

  TEST_CASE("wait_for and get_for time out with TimeoutError on a blocked task") {
    Event started, open;
    StartedSupervisor sv(options("tk-timeout", 1));
    OpenOnExit guard{&open};
    auto t = sv.submit({}, [&] {
      started.set();
      open.wait_for();
      return 5;
    });
    REQUIRE(started.wait_for());
    CHECK_FALSE(t.wait_for(20ms));
    CHECK_FALSE(t.wait_until(std::chrono::steady_clock::now() + 5ms));
    auto msg = what_of<atask::TimeoutError>([&] { (void)t.get_for(20ms); });
    CHECK(contains(msg, "TaskHandle::get_for()"));
    CHECK(contains(msg, "#" + std::to_string(t.id())));
    CHECK(t.status() == TaskStatus::started);  // a timed-out wait changes nothing
    open.set();
    CHECK(t.get_for(patience) == 5);
    CHECK(t.wait_for(0ms));
  }

  // -- cancel ------------------------------------------------------------------------

  TEST_CASE("cancel() of a queued task means it never runs") {
    Event blocker, open;
    std::atomic<bool> ran{false};
    StartedSupervisor sv(options("tk-cancel-q", 1));
    OpenOnExit guard{&open};
    auto b = sv.submit({.priority = Priority::low}, [&] {
      blocker.set();
      open.wait_for();
    });
    REQUIRE(blocker.wait_for());
    auto q = sv.submit({}, [&] {
      ran = true;
      return 1;
    });
    CHECK(q.status() == TaskStatus::queued);
    CHECK(sv.info().pool.queued[atask::index(Priority::normal)] == 1);
    // A thread already blocked in get() is released by the cancel.
    auto waiter =
        std::async(std::launch::async, [q] { return what_of<atask::TaskCanceled>([&] { q.get(); }); });

    CHECK(q.cancel());
    CHECK(q.status() == TaskStatus::canceled);
    CHECK(q.done());
    CHECK_THROWS_AS(q.get_for(patience), atask::TaskCanceled);
    CHECK(contains(wait_or_abort(waiter, "a get() that cancel() should release"), "canceled"));
    CHECK(sv.info().pool.queued_total == 0);  // out of the pool's queue at once
    auto i = q.info();
    CHECK_FALSE(i.started_at.has_value());
    CHECK(i.finished_at.has_value());
    CHECK(contains(i.error, "canceled"));
    CHECK_FALSE(q.cancel());  // final now

    // Same priority, queued after it: had the canceled task stayed in the
    // queue, it would have run before this one.
    auto next = sv.submit({}, [&] { return ran.load(); });
    open.set();
    CHECK(next.get_for(patience) == false);
    CHECK_FALSE(ran.load());
    CHECK(b.wait_for(patience));
    CHECK(sv.info().tasks.canceled[atask::index(Priority::normal)] == 1);
  }

  TEST_CASE("cancel() of a running task requests the stop_token it was given") {
    Event started;
    StartedSupervisor sv(options("tk-cancel-run", 1));
    auto t = sv.submit({}, [&](std::stop_token st) {
      Event stopped;
      std::stop_callback cb(st, [&] { stopped.set(); });
      started.set();
      if (!stopped.wait_for()) return std::string("stop was not requested");
      return std::string(atask::this_task::stop_requested() ? "stopped" : "this_task did not see it");
    });
    REQUIRE(started.wait_for());
    CHECK(t.cancel());
    CHECK(t.get_for(patience) == "stopped");
    // The task decided how to end: it returned normally.
    CHECK(t.status() == TaskStatus::completed);
  }

  TEST_CASE("cancel() of a running task is seen through this_task") {
    Event started;
    StartedSupervisor sv(options("tk-this-task", 1));
    CHECK_FALSE(atask::this_task::stop_requested());  // not in a task
    CHECK(atask::this_task::id() == 0);
    CHECK_FALSE(atask::this_task::stop_token().stop_possible());
    auto t = sv.submit({}, [&]() -> std::pair<std::uint64_t, std::string> {
      auto st = atask::this_task::stop_token();
      if (!st.stop_possible()) return {atask::this_task::id(), "no stop token"};
      if (atask::this_task::stop_requested()) return {atask::this_task::id(), "stopped too early"};
      Event stopped;
      std::stop_callback cb(st, [&] { stopped.set(); });
      started.set();
      if (!stopped.wait_for()) return {atask::this_task::id(), "stop was not requested"};
      return {atask::this_task::id(), atask::this_task::stop_requested() ? "stopped" : "flag not set"};
    });
    REQUIRE(started.wait_for());
    CHECK(t.cancel());
    auto [id, result] = t.get_for(patience);
    CHECK(result == "stopped");
    CHECK(id == t.id());
  }

  TEST_CASE("cancel() of a finished task returns false and changes nothing") {
    StartedSupervisor sv(options("tk-cancel-done", 1));
    auto ok = sv.submit({}, [] { return 3; });
    REQUIRE(ok.wait_for(patience));
    auto finished = ok.info().finished_at;
    CHECK_FALSE(ok.cancel());
    CHECK(ok.status() == TaskStatus::completed);
    CHECK(ok.get() == 3);
    CHECK(ok.info().finished_at == finished);

    auto bad = sv.submit({}, []() -> int { throw std::out_of_range("range"); });
    REQUIRE(bad.wait_for(patience));
    CHECK_FALSE(bad.cancel());
    CHECK(bad.status() == TaskStatus::failed);
    CHECK_THROWS_AS(bad.get(), std::out_of_range);
    CHECK(bad.info().error == "range");
  }

  TEST_CASE("calls on an empty handle throw atask::Error naming the call") {
    atask::TaskHandle<int> h;
    CHECK_FALSE(h.valid());
    CHECK_THROWS_WITH_AS(h.get(), doctest::Contains("TaskHandle::get() - empty handle"), atask::Error);
    CHECK_THROWS_WITH_AS(h.get_for(1ms), doctest::Contains("TaskHandle::get_for()"), atask::Error);
    CHECK_THROWS_WITH_AS((void)h.wait_for(1ms), doctest::Contains("TaskHandle::wait_for()"), atask::Error);
    CHECK_THROWS_WITH_AS(h.wait(), doctest::Contains("TaskHandle::wait()"), atask::Error);
    CHECK_THROWS_WITH_AS((void)h.cancel(), doctest::Contains("TaskHandle::cancel()"), atask::Error);
    CHECK_THROWS_WITH_AS((void)h.id(), doctest::Contains("TaskHandle::id()"), atask::Error);
    CHECK_THROWS_WITH_AS((void)h.status(), doctest::Contains("TaskHandle::status()"), atask::Error);
    CHECK_THROWS_WITH_AS((void)h.info(), doctest::Contains("TaskHandle::info()"), atask::Error);
    CHECK_THROWS_WITH_AS((void)h.done(), doctest::Contains("TaskHandle::done()"), atask::Error);
    CHECK_THROWS_WITH_AS((void)h.error(), doctest::Contains("TaskHandle::error()"), atask::Error);
    CHECK_THROWS_WITH_AS(h.async_get([](std::exception_ptr, int) {}),
                         doctest::Contains("TaskHandle::async_get()"), atask::Error);
    atask::TaskHandle<> v;
    CHECK_THROWS_AS(v.get(), atask::Error);
    CHECK(atask::TaskHandle<int>() == h);  // two empty handles
  }

  // -- many tasks --------------------------------------------------------------------

  TEST_CASE("wait_completed returns the results in the handles' order") {
    std::vector<std::unique_ptr<Event>> gates;
    for (int k = 0; k < 4; ++k) gates.push_back(std::make_unique<Event>());
    StartedSupervisor sv(options("tk-wait-all", 4));
    OpenOnExit guard{gates[0].get(), gates[1].get(), gates[2].get(), gates[3].get()};
    std::vector<atask::TaskHandle<int>> hs;
    for (int k = 0; k < 4; ++k)
      hs.push_back(sv.submit({}, [&gate = *gates[k], k] {
        gate.wait_for();
        return k * 10;
      }));
    // Finish them last to first.
    for (int k = 3; k >= 0; --k) {
      gates[k]->set();
      REQUIRE(hs[k].wait_for(patience));
    }
    CHECK(atask::wait_completed(hs, patience) == std::vector<int>{0, 10, 20, 30});

    std::atomic<int> ran{0};
    std::vector<atask::TaskHandle<void>> vs;
    for (int k = 0; k < 3; ++k) vs.push_back(sv.submit({}, [&] { ++ran; }));
    atask::wait_completed(vs, patience);
    CHECK(ran.load() == 3);
  }

  TEST_CASE("wait_completed throws TimeoutError naming how many tasks did not finish") {
    Event open;
    StartedSupervisor sv(options("tk-wait-late", 3));
    OpenOnExit guard{&open};
    std::vector<atask::TaskHandle<int>> hs;
    hs.push_back(sv.submit({}, [] { return 1; }));
    hs.push_back(sv.submit({}, [&] { return open.wait_for() ? 2 : -2; }));
    hs.push_back(sv.submit({}, [&] { return open.wait_for() ? 3 : -3; }));
    REQUIRE(hs[0].wait_for(patience));
    auto msg = what_of<atask::TimeoutError>([&] { (void)atask::wait_completed(hs, 30ms); });
    CHECK(contains(msg, "wait_completed()"));
    CHECK(contains(msg, "2 of 3"));
    open.set();
    CHECK(atask::wait_completed(hs, patience) == std::vector<int>{1, 2, 3});
  }

  TEST_CASE("wait_completed rethrows the first failure in the handles' order") {
    StartedSupervisor sv(options("tk-wait-fail"));
    std::vector<atask::TaskHandle<int>> hs;
    hs.push_back(sv.submit({}, [] { return 1; }));
    hs.push_back(sv.submit({}, []() -> int { throw std::domain_error("first"); }));
    hs.push_back(sv.submit({}, []() -> int { throw std::out_of_range("second"); }));
    CHECK_THROWS_WITH_AS(atask::wait_completed(hs, patience), "first", std::domain_error);
  }

  TEST_CASE("wait_completed of one handle returns its result, rethrows its failure, or times out") {
    Event open;
    StartedSupervisor sv(options("tk-wait-one"));
    OpenOnExit guard{&open};
    auto late = sv.submit({}, [&] { return open.wait_for() ? 7 : -7; });
    auto msg = what_of<atask::TimeoutError>([&] { (void)atask::wait_completed(late, 30ms); });
    CHECK(contains(msg, "wait_completed() - the task did not finish in time"));
    open.set();
    CHECK(atask::wait_completed(late, patience) == 7);

    auto fails = sv.submit({}, []() -> int { throw std::domain_error("one"); });
    CHECK_THROWS_WITH_AS(atask::wait_completed(fails, patience), "one", std::domain_error);

    std::atomic<int> ran{0};
    atask::TaskHandle<void> v = sv.submit({}, [&] { ++ran; });
    atask::wait_completed(v, patience);
    CHECK(ran.load() == 1);
  }

  // -- coroutines ----------------------------------------------------------------------

  TEST_CASE("a coroutine co_awaits a thread task's handle without blocking its aloop") {
    Event started, open;
    StartedSupervisor sv(options("tk-await"));
    OpenOnExit guard{&open};
    auto th = sv.submit({}, [&] {
      started.set();
      open.wait_for();
      return 20;
    });
    std::atomic<bool> void_done{false};
    auto vh = sv.submit({}, [&] { void_done = true; });
    auto co = sv.submit({}, [th, vh, &void_done]() -> asio::awaitable<std::pair<int, std::thread::id>> {
      co_await vh.async_get(asio::use_awaitable);  // a void task: resumes once it is done
      if (!void_done.load()) co_return std::pair{-1, std::this_thread::get_id()};
      int v = co_await th.async_get(asio::use_awaitable);
      co_return std::pair{v + 1, std::this_thread::get_id()};
    });
    CHECK(co.kind() == TaskKind::coroutine);
    REQUIRE(started.wait_for());
    // The aloop has one thread; it runs another coroutine while `co` waits.
    auto other = sv.submit({}, []() -> asio::awaitable<int> { co_return 5; });
    CHECK(other.get_for(patience) == 5);
    CHECK(co.status() == TaskStatus::started);
    open.set();
    auto [v, where] = co.get_for(patience);
    CHECK(v == 21);
    CHECK(where == sv.default_aloop().thread_id());  // resumed on its aloop, not on the pool thread
    CHECK(co.status() == TaskStatus::completed);
  }

  TEST_CASE("this_task in a coroutine task: its id after every suspension and in what it co_spawns") {
    StartedSupervisor sv(options("tk-this-coro", 1));
    Event waiting, release;
    OpenOnExit guard{&release};
    auto th = sv.submit({}, [&] {
      waiting.set();
      release.wait_for();
      return 1;
    });
    // Each entry: the id this_task gives at one point of the coroutine.
    auto co = sv.submit({}, [th]() -> asio::awaitable<std::vector<std::uint64_t>> {
      std::vector<std::uint64_t> ids{atask::this_task::id()};
      auto ex = co_await asio::this_coro::executor;
      asio::steady_timer timer(ex, 1ms);
      co_await timer.async_wait(asio::use_awaitable);  // resumed by a timer
      ids.push_back(atask::this_task::id());
      co_await th.async_get(asio::use_awaitable);  // resumed by a pool thread's completion
      ids.push_back(atask::this_task::id());
      // A coroutine spawned on the task's own executor belongs to the task.
      ids.push_back(co_await asio::co_spawn(
          ex, []() -> asio::awaitable<std::uint64_t> { co_return atask::this_task::id(); },
          asio::use_awaitable));
      co_return ids;
    });
    REQUIRE(waiting.wait_for());
    // While `co` is suspended, other work on its aloop is no task's.
    std::promise<std::uint64_t> between;
    asio::post(sv.default_aloop().get_executor(), [&] { between.set_value(atask::this_task::id()); });
    auto between_f = between.get_future();
    REQUIRE(between_f.wait_for(patience) == std::future_status::ready);
    CHECK(between_f.get() == 0);
    release.set();
    const auto ids = co.get_for(patience);
    CHECK(ids == std::vector<std::uint64_t>(4, co.id()));
    CHECK(atask::this_task::id() == 0);
  }

  TEST_CASE("a coroutine co_spawned by a coroutine task may outlive it and still names it") {
    StartedSupervisor sv(options("tk-this-coro-outlive", 1));
    // Opened by the test once the task has ended and its last handle is gone.
    using Gate = asio::experimental::concurrent_channel<void(boost::system::error_code)>;
    Gate gate(sv.default_aloop().get_executor(), 1);
    std::promise<std::uint64_t> late;
    auto late_f = late.get_future();
    std::uint64_t id = 0;
    {
      auto co = sv.submit({}, [&gate, &late]() -> asio::awaitable<int> {
        // Detached, on the task's executor: it runs on after the task ends.
        // (Parameters, not captures: the lambda is gone before its coroutine runs.)
        asio::co_spawn(
            co_await asio::this_coro::executor,
            [](Gate* g, std::promise<std::uint64_t>* l) -> asio::awaitable<void> {
              co_await g->async_receive(asio::use_awaitable);
              l->set_value(atask::this_task::id());
            }(&gate, &late),
            asio::detached);
        co_return 1;
      });
      CHECK(co.get_for(patience) == 1);
      id = co.id();
    }  // the executor's copies keep the finished task's state alive
    gate.try_send(boost::system::error_code{});
    REQUIRE(late_f.wait_for(patience) == std::future_status::ready);
    CHECK(late_f.get() == id);
  }

  TEST_CASE("this_task in a coroutine task sees its stop request") {
    StartedSupervisor sv(options("tk-this-coro-stop", 1));
    Event started;
    auto co = sv.submit({}, [&]() -> asio::awaitable<std::string> {
      if (atask::this_task::stop_requested()) co_return "stopped too early";
      if (!atask::this_task::stop_token().stop_possible()) co_return "no stop token";
      asio::steady_timer forever(co_await asio::this_coro::executor, 1h);
      started.set();
      try {
        co_await forever.async_wait(asio::use_awaitable);  // ended by the cancel
      } catch (const boost::system::system_error&) {
      }
      co_return atask::this_task::stop_requested() ? "stopped" : "this_task did not see it";
    });
    REQUIRE(started.wait_for());
    CHECK(co.cancel());
    CHECK(co.get_for(patience) == "stopped");
  }

  TEST_CASE("co_await async_get rethrows the thread task's exception in the coroutine") {
    StartedSupervisor sv(options("tk-await-err"));
    auto th = sv.submit({}, []() -> int { throw std::domain_error("from the thread"); });
    auto caught = sv.submit({}, [th]() -> asio::awaitable<std::string> {
      try {
        co_await th.async_get(asio::use_awaitable);
      } catch (const std::domain_error& e) {
        co_return std::string("caught: ") + e.what();
      }
      co_return std::string("nothing thrown");
    });
    CHECK(caught.get_for(patience) == "caught: from the thread");
    // Uncaught, it fails the coroutine task with the same exception type.
    auto uncaught = sv.submit(
        {}, [th]() -> asio::awaitable<int> { co_return co_await th.async_get(asio::use_awaitable); });
    REQUIRE(uncaught.wait_for(patience));
    CHECK(uncaught.status() == TaskStatus::failed);
    CHECK_THROWS_WITH_AS(uncaught.get(), "from the thread", std::domain_error);
  }

  TEST_CASE("async_get completes a callback on the callback's executor") {
    Event open;
    StartedSupervisor sv(options("tk-async-cb", 1));
    OpenOnExit guard{&open};
    auto th = sv.submit({}, [&] {
      open.wait_for();
      return 7;
    });
    asio::io_context ioc;
    std::optional<int> got;
    std::thread::id where;
    th.async_get(asio::bind_executor(ioc, [&](std::exception_ptr e, int v) {
      if (!e) got = v;
      where = std::this_thread::get_id();
    }));
    open.set();
    ioc.run_for(patience);  // returns once the callback ran: it held the io_context's work
    CHECK(got == 7);
    CHECK(where == std::this_thread::get_id());
  }

  // -- arguments -----------------------------------------------------------------------

  TEST_CASE("tasks take move-only arguments and callables and return move-only results") {
    StartedSupervisor sv(options("tk-move"));
    auto a = sv.submit(
        {}, [](std::unique_ptr<int> p, int k) { return *p + k; }, std::make_unique<int>(40), 2);
    CHECK(a.get_for(patience) == 42);
    auto owned = std::make_unique<int>(5);
    auto b = sv.submit({}, [p = std::move(owned)] { return *p * 2; });
    CHECK(b.get_for(patience) == 10);
    auto c = sv.submit(
        {}, [](std::stop_token, std::unique_ptr<int> p) { return *p; }, std::make_unique<int>(9));
    CHECK(c.get_for(patience) == 9);
    auto d = sv.submit({}, [] { return std::make_unique<std::string>("moved out"); });
    REQUIRE(d.wait_for(patience));
    REQUIRE(d.get() != nullptr);
    CHECK(*d.get() == "moved out");

    // Arguments are freed when the task ends, not when the last handle goes.
    auto shared = std::make_shared<int>(1);
    auto e = sv.submit(
        {}, [](std::shared_ptr<int> p) { return *p; }, shared);
    CHECK(e.get_for(patience) == 1);
    CHECK(shared.use_count() == 1);
  }

  // -- delays --------------------------------------------------------------------------

  TEST_CASE("a delayed task leaves the pool slot to an immediate task while it waits") {
    Event started, open;
    std::atomic<bool> delayed_ran{false};
    StartedSupervisor sv(options("tk-delay", 1));
    OpenOnExit guard{&open};
    const auto t0 = std::chrono::steady_clock::now();
    auto delayed = sv.submit({.delay = 500ms}, [&] {
      delayed_ran = true;
      return std::chrono::steady_clock::now();
    });
    CHECK(delayed.status() == TaskStatus::delayed);
    CHECK_FALSE(delayed.info().queued_at.has_value());
    auto now = sv.submit({}, [&] {
      started.set();
      open.wait_for();
      return delayed_ran.load();
    });
    // The only slot is free for it while the delayed task waits.
    REQUIRE(started.wait_for());
    auto i = sv.info();
    CHECK(i.pool.running_total == 1);
    CHECK(i.pool.queued_total == 0);
    CHECK(delayed.status() == TaskStatus::delayed);
    open.set();
    CHECK(now.get_for(patience) == false);  // it ran first
    auto ran_at = delayed.get_for(patience);
    CHECK(ran_at - t0 >= 500ms);
    auto di = delayed.info();
    REQUIRE(di.queued_at);
    REQUIRE(di.started_at);
    CHECK(*di.queued_at - t0 >= 500ms);  // queued once the delay was over
    CHECK(*di.queued_at <= *di.started_at);
  }

  TEST_CASE("a canceled delayed task never runs") {
    std::atomic<bool> ran{false};
    StartedSupervisor sv(options("tk-delay-cancel", 1));
    auto delayed = sv.submit({.delay = 100ms}, [&] { ran = true; });
    CHECK(delayed.status() == TaskStatus::delayed);
    CHECK(delayed.cancel());
    CHECK(delayed.status() == TaskStatus::canceled);
    CHECK_THROWS_AS(delayed.get_for(patience), atask::TaskCanceled);
    CHECK_FALSE(delayed.cancel());
    // A later task with a longer delay: the canceled one's timer would have
    // fired first, and in a one-slot pool it would have run first.
    auto later = sv.submit({.delay = 150ms}, [&] { return ran.load(); });
    CHECK(later.get_for(patience) == false);
    CHECK_FALSE(ran.load());
    auto counters = sv.info().tasks;
    CHECK(counters.canceled[atask::index(Priority::normal)] == 1);
    CHECK(counters.submitted[atask::index(Priority::normal)] == 2);
  }

  TEST_CASE("statuses and kinds have names") {
    CHECK(atask::to_string(TaskStatus::queued) == "queued");
    CHECK(atask::to_string(TaskStatus::delayed) == "delayed");
    CHECK(atask::to_string(TaskStatus::started) == "started");
    CHECK(atask::to_string(TaskStatus::completed) == "completed");
    CHECK(atask::to_string(TaskStatus::failed) == "failed");
    CHECK(atask::to_string(TaskStatus::canceled) == "canceled");
    CHECK(atask::to_string(TaskKind::thread) == "thread");
    CHECK(atask::to_string(TaskKind::coroutine) == "coroutine");
    CHECK(atask::to_string(TaskKind::process) == "process");
  }

  TEST_CASE(
      "a running task asked to stop that throws TaskCanceled ends canceled, any other exception failed") {
    StartedSupervisor sv(options("endcancel"));
    Counter both;
    auto ends_by_cancel = sv.submit({}, [&](std::stop_token st) -> int {
      both.bump();
      while (!st.stop_requested()) std::this_thread::yield();
      throw atask::TaskCanceled("gave up as asked");
    });
    auto ends_by_error = sv.submit({}, [&](std::stop_token st) -> int {
      both.bump();
      while (!st.stop_requested()) std::this_thread::yield();
      throw std::runtime_error("broke while stopping");
    });
    REQUIRE(both.wait_for_at_least(2));
    CHECK(ends_by_cancel.cancel());
    CHECK(ends_by_error.cancel());
    REQUIRE(ends_by_cancel.wait_for(10s));
    REQUIRE(ends_by_error.wait_for(10s));
    CHECK(ends_by_cancel.status() == TaskStatus::canceled);
    CHECK_THROWS_WITH_AS((void)ends_by_cancel.get(), "gave up as asked", atask::TaskCanceled);
    CHECK(ends_by_error.status() == TaskStatus::failed);
    CHECK_THROWS_WITH_AS((void)ends_by_error.get(), "broke while stopping", std::runtime_error);
    sv.stop();
  }
}
