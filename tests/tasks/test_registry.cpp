// Named tasks: one definition, JSON in and out, run in this process.
#include <atask/tasks/registry.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using namespace test;

namespace {

struct Point {
  int x = 0, y = 0;
};
void tag_invoke(const json::value_from_tag&, json::value& v, const Point& p) {
  v = {{"x", p.x}, {"y", p.y}};
}
Point tag_invoke(const json::value_to_tag<Point>&, const json::value& v) {
  return {json::value_to<int>(v.at("x")), json::value_to<int>(v.at("y"))};
}

int multiply(int a, int b) {
  return a * b;
}
int child_pid() {
  return static_cast<int>(::getpid());
}
std::string shout(const std::string& s) {
  return s + "!";
}
// The wall-clock time it runs at (ms since the epoch), in the child.
std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

atask::SupervisorOptions with_processes(std::string id) {
  auto o = options(std::move(id));
  o.processes.pool_size = 1;
  return o;
}

}  // namespace

TEST_SUITE("tasks") {
  TEST_CASE("a named thread task takes JSON arguments and gives a JSON result, user types included") {
    StartedSupervisor sv(options("named1"));
    atask::TaskRegistry tasks;
    tasks.add("add", [](int a, int b) { return a + b; });
    tasks.add("move", [](Point p, int d) { return Point{p.x + d, p.y + d}; });
    tasks.add("greet", [](const std::string& who) { return "hello " + who; });
    std::thread::id ran_on;
    tasks.add("nothing", [&] { ran_on = std::this_thread::get_id(); });

    CHECK(tasks.submit(sv, "add", {2, 3}).get_for(patience) == json::value(5));
    const auto moved = tasks.submit(sv, "move", {json::value_from(Point{1, 2}), 10}).get_for(patience);
    CHECK(json::value_to<Point>(moved).x == 11);
    CHECK(json::value_to<Point>(moved).y == 12);
    CHECK(tasks.submit(sv, "greet", {"ada"}).get_for(patience) == json::value("hello ada"));
    CHECK(tasks.submit(sv, "nothing", {}).get_for(patience).is_null());
    CHECK(ran_on != std::this_thread::get_id());  // on a pool thread
  }

  TEST_CASE(
      "a named task shows in the supervisor's tasks under its name, at its default or the call's priority") {
    StartedSupervisor sv(options("named2"));
    atask::TaskRegistry tasks;
    tasks.add("urgent", [] { return 1; }, {.priority = atask::Priority::high});
    auto a = tasks.submit(sv, "urgent", {});
    auto b = tasks.submit(sv, "urgent", {}, {.priority = atask::Priority::low});
    REQUIRE(a.get_for(patience) == json::value(1));
    REQUIRE(b.get_for(patience) == json::value(1));
    int seen = 0;
    for (const auto& t : sv.tasks()) {
      if (t.id == a.id()) {
        CHECK(t.name == "urgent");
        CHECK(t.priority == atask::Priority::high);
        ++seen;
      }
      if (t.id == b.id()) {
        CHECK(t.priority == atask::Priority::low);
        ++seen;
      }
    }
    CHECK(seen == 2);
  }

  TEST_CASE("a coroutine task runs on its aloop and keeps arguments taken by reference alive") {
    StartedSupervisor sv(options("named3"));
    sv.create_aloop("io");
    atask::TaskRegistry tasks;
    tasks.add("later",
              [](const std::string& s, int ms) -> asio::awaitable<std::string> {
                asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
                co_await t.async_wait(asio::use_awaitable);
                co_return s + s;  // `s` refers to the decoded argument: still alive after the wait
              },
              {.aloop = "io"});
    tasks.add("void-co", []() -> asio::awaitable<void> { co_return; });
    CHECK(tasks.find("later")->kind == atask::TaskKind::coroutine);
    auto h = tasks.submit(sv, "later", {"ab", 20});
    CHECK(h.kind() == atask::TaskKind::coroutine);
    CHECK(h.get_for(patience) == json::value("abab"));
    CHECK(tasks.submit(sv, "void-co", {}).get_for(patience).is_null());
  }

  TEST_CASE("a process task runs in a child of the process pool") {
    StartedSupervisor sv(with_processes("named4"));
    atask::TaskRegistry tasks;
    tasks.add("multiply", atask::process(&multiply));
    tasks.add("pid", atask::process(&child_pid));
    tasks.add("shout", atask::process(&shout));
    CHECK(tasks.find("pid")->kind == atask::TaskKind::process);
    CHECK(tasks.submit(sv, "multiply", {6, 7}).get_for(patience) == json::value(42));
    CHECK(tasks.submit(sv, "shout", {"hey"}).get_for(patience) == json::value("hey!"));
    const auto pid = tasks.submit(sv, "pid", {}).get_for(patience);
    CHECK(json::value_to<int>(pid) != static_cast<int>(::getpid()));
    // Arguments of the wrong type are the child's to refuse: the task fails, the pool goes on.
    CHECK_THROWS_AS(tasks.submit(sv, "multiply", {"six", 7}).get_for(patience), atask::ProcessError);
    CHECK(tasks.submit(sv, "multiply", {2, 2}).get_for(patience) == json::value(4));
  }

  TEST_CASE("an unknown name or arguments that do not fit fail the task with an error that names it") {
    StartedSupervisor sv(with_processes("named5"));
    atask::TaskRegistry tasks;
    tasks.add("add", [](int a, int b) { return a + b; });
    tasks.add("multiply", atask::process(&multiply));
    tasks.add("co", [](int x) -> asio::awaitable<int> { co_return x; });

    auto unknown = tasks.submit(sv, "nope", {1});
    CHECK(contains(what_of<atask::NotFoundError>([&] { (void)unknown.get_for(patience); }),
                   "no task named 'nope'"));
    auto few = tasks.submit(sv, "add", {1});
    CHECK(contains(what_of<atask::ConversionError>([&] { (void)few.get_for(patience); }),
                   "task 'add': takes 2 arguments, got 1"));
    auto bad = tasks.submit(sv, "add", {1, "two"});
    const auto why = what_of<atask::ConversionError>([&] { (void)bad.get_for(patience); });
    CHECK(contains(why, "task 'add': argument 2 does not convert"));
    auto co_bad = tasks.submit(sv, "co", {json::array{}});
    CHECK(contains(what_of<atask::ConversionError>([&] { (void)co_bad.get_for(patience); }),
                   "task 'co': argument 1 does not convert"));
    auto proc_few = tasks.submit(sv, "multiply", {});
    CHECK(contains(what_of<atask::ConversionError>([&] { (void)proc_few.get_for(patience); }),
                   "task 'multiply': takes 2 arguments, got 0"));
    // The supervisor goes on.
    CHECK(tasks.submit(sv, "add", {1, 1}).get_for(patience) == json::value(2));
  }

  TEST_CASE(
      "registering a name twice, a malformed name or an aloop on a non-coroutine task is an options error") {
    atask::TaskRegistry tasks;
    tasks.add("a.b-c_d:e@1/x", [] {});
    CHECK(contains(what_of<atask::OptionsError>([&] { tasks.add("a.b-c_d:e@1/x", [] { return 2; }); }),
                   "already registered"));
    CHECK(contains(what_of<atask::OptionsError>([&] { tasks.add("", [] {}); }), "empty"));
    CHECK(contains(what_of<atask::OptionsError>([&] { tasks.add("has space", [] {}); }), "no spaces"));
    CHECK(contains(what_of<atask::OptionsError>([&] { tasks.add("t", [] {}, {.aloop = "io"}); }),
                   "is for coroutine tasks"));
    CHECK(contains(
        what_of<atask::OptionsError>([&] { tasks.add("p", atask::process(&multiply), {.aloop = "io"}); }),
        "in a child process"));
    CHECK(tasks.names() == std::vector<std::string>{"a.b-c_d:e@1/x"});
    CHECK(tasks.contains("a.b-c_d:e@1/x"));
    CHECK_FALSE(tasks.contains("t"));
    CHECK(tasks.find("a.b-c_d:e@1/x")->arity == 0);
  }

  TEST_CASE("a call's eta or delay holds a named task until then - every kind - both together are refused") {
    using clock = std::chrono::system_clock;
    StartedSupervisor sv(with_processes("named8"));
    atask::TaskRegistry tasks;
    std::array<clock::time_point, 2> started{};
    tasks.add("stamp", [&](int i) {
      started[static_cast<std::size_t>(i)] = clock::now();
      return i;
    });
    tasks.add("co-stamp", [](int) -> asio::awaitable<std::int64_t> { co_return now_ms(); });
    tasks.add("proc-stamp", atask::process(&now_ms));

    const auto eta = clock::now() + 200ms;
    const auto eta_ms = std::chrono::duration_cast<std::chrono::milliseconds>(eta.time_since_epoch()).count();
    auto thread_task = tasks.submit(sv, "stamp", {0}, {.eta = eta});
    auto co = tasks.submit(sv, "co-stamp", {0}, {.eta = eta});
    auto proc = tasks.submit(sv, "proc-stamp", {}, {.eta = eta});
    CHECK(thread_task.get_for(patience) == json::value(0));
    CHECK(started[0] >= eta);
    CHECK(json::value_to<std::int64_t>(co.get_for(patience)) >= eta_ms);
    CHECK(json::value_to<std::int64_t>(proc.get_for(patience)) >= eta_ms);

    const auto before = clock::now();
    auto delayed = tasks.submit(sv, "stamp", {1}, {.priority = atask::Priority::high, .delay = 200ms});
    CHECK(delayed.get_for(patience) == json::value(1));
    CHECK(started[1] - before >= 200ms);
    CHECK(delayed.priority() == atask::Priority::high);

    auto far = tasks.submit(sv, "stamp", {0}, {.eta = clock::now() + 1h});
    CHECK(far.status() == atask::TaskStatus::delayed);
    CHECK(far.cancel());
    CHECK(tasks.submit(sv, "stamp", {0}, {.eta = clock::now() - 1h}).get_for(patience) == json::value(0));
    CHECK(contains(what_of<atask::OptionsError>(
                       [&] { (void)tasks.submit(sv, "stamp", {0}, {.delay = 1s, .eta = clock::now()}); }),
                   "set delay or eta, not both"));
  }

  TEST_CASE("submit on a supervisor that is not running is a lifecycle error") {
    atask::Supervisor sv(options("named7"));
    atask::TaskRegistry tasks;
    tasks.add("one", [] { return 1; });
    CHECK_THROWS_AS((void)tasks.submit(sv, "one", {}), atask::LifecycleError);
  }
}
