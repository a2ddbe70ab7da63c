#include <atask/collection.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using atask::Priority;

using namespace test;

namespace {

std::vector<std::string> names_of(const auto& result) {
  std::vector<std::string> out;
  for (const auto& e : result.entries) out.push_back(e.name);
  return out;
}

}  // namespace

TEST_SUITE("collections") {
  TEST_CASE("a function collection runs every function once and sums their effects") {
    atask::FunctionCollection<int> fc;
    int total = 0;
    fc.add("one", [&] { return total += 1; });
    fc.add("two", [&] { return total += 2; });
    fc.add("four", [&] { return total += 4; });
    CHECK(fc.size() == 3);
    auto r = fc.run();
    CHECK(total == 7);
    CHECK(r.all_ok);
    REQUIRE(r.entries.size() == 3);
    CHECK(names_of(r) == std::vector<std::string>{"one", "two", "four"});
    CHECK(r.entries[0].value == 1);
    CHECK(r.entries[1].value == 3);
    CHECK(r.entries[2].value == 7);
    for (const auto& e : r.entries) {
      CHECK(e.ok());
      CHECK(e.error == nullptr);
      CHECK(e.error_message.empty());
      CHECK(e.priority == atask::default_function_priority);
    }
    fc.run();  // a collection can run again
    CHECK(total == 14);
  }

  TEST_CASE("functions run in priority order with lower values first and ties in registration order") {
    atask::FunctionCollection<> fc;
    std::vector<std::string> ran;
    auto rec = [&](std::string n) { return [&ran, n] { ran.push_back(n); }; };
    fc.add("normal-a", rec("normal-a"));
    fc.add("late", rec("late"), 1000);
    fc.add("first", rec("first"), -5);
    fc.add("normal-b", rec("normal-b"));
    fc.add("early", rec("early"), 10);
    fc.add("normal-c", rec("normal-c"), 100);
    auto r = fc.run();
    const std::vector<std::string> expected{"first", "early", "normal-a", "normal-b", "normal-c", "late"};
    CHECK(ran == expected);
    CHECK(names_of(r) == expected);
    CHECK(r.entries[0].priority == -5);
    CHECK(r.entries[5].priority == 1000);
  }

  TEST_CASE("a function that throws gets its own error while the others still run") {
    atask::FunctionCollection<int> fc;
    int ran = 0;
    fc.add(
        "a", [&] { return ++ran; }, 1);
    fc.add(
        "boom",
        [&]() -> int {
          ++ran;
          throw std::runtime_error("disk on fire");
        },
        2);
    fc.add(
        "c", [&] { return ++ran; }, 3);
    auto r = fc.run();
    CHECK(ran == 3);
    CHECK_FALSE(r.all_ok);
    CHECK(r.entries[0].ok());
    CHECK(r.entries[0].value == 1);
    const auto& bad = r.at("boom");
    CHECK_FALSE(bad.ok());
    CHECK_FALSE(bad.value.has_value());
    CHECK(bad.error_message == "disk on fire");
    CHECK_THROWS_WITH_AS(std::rethrow_exception(bad.error), "disk on fire", std::runtime_error);
    CHECK(r.entries[2].ok());
    CHECK(r.entries[2].value == 3);
  }

  TEST_CASE("all_ok is false when any function fails even with a non-std exception") {
    atask::FunctionCollection<> fc;
    fc.add("fine", [] {});
    fc.add("odd", [] { throw 42; });
    auto r = fc.run();
    CHECK_FALSE(r.all_ok);
    CHECK(r.at("fine").ok());
    CHECK_FALSE(r.at("odd").ok());
    CHECK(contains(r.at("odd").error_message, "unknown exception"));
    CHECK_THROWS_AS(std::rethrow_exception(r.at("odd").error), int);
  }

  TEST_CASE("a void function's value is engaged exactly when it returned") {
    atask::FunctionCollection<> fc;
    fc.add("ok", [] {});
    fc.add("bad", [] { throw std::logic_error("no"); });
    auto r = fc.run();
    static_assert(std::is_same_v<decltype(r.entries[0].value), std::optional<std::monostate>>);
    CHECK(r.at("ok").value.has_value());
    CHECK_FALSE(r.at("bad").value.has_value());
  }

  TEST_CASE("an empty collection runs nothing and is all ok") {
    atask::FunctionCollection<int> fc;
    CHECK(fc.empty());
    auto r = fc.run();
    CHECK(r.entries.empty());
    CHECK(r.all_ok);
  }

  TEST_CASE("add rejects an empty name and a duplicate name and an empty function") {
    atask::FunctionCollection<int> fc;
    fc.add("x", [] { return 1; });
    CHECK(what_of<atask::OptionsError>([&] { fc.add("x", [] { return 2; }); }) ==
          "FunctionCollection::add() - a function named 'x' is already registered");
    CHECK(what_of<atask::OptionsError>([&] { fc.add("", [] { return 2; }); }) ==
          "FunctionCollection::add() - the function name is empty");
    CHECK(what_of<atask::OptionsError>([&] { fc.add("null", std::function<int()>{}); }) ==
          "FunctionCollection::add() - function 'null' is empty");
    int (*no_fn)() = nullptr;
    CHECK_THROWS_AS(fc.add("nullptr", no_fn), atask::OptionsError);
    CHECK(fc.size() == 1);
    CHECK(fc.run().at("x").value == 1);  // the first registration stands
  }

  TEST_CASE("remove and clear change what the next run calls") {
    atask::FunctionCollection<int> fc;
    fc.add("a", [] { return 1; });
    fc.add("b", [] { return 2; });
    CHECK(fc.contains("a"));
    CHECK(fc.remove("a"));
    CHECK_FALSE(fc.remove("a"));
    CHECK_FALSE(fc.contains("a"));
    CHECK(names_of(fc.run()) == std::vector<std::string>{"b"});
    fc.add("a", [] { return 10; });  // the name is free again
    CHECK(fc.run().at("a").value == 10);
    fc.clear();
    CHECK(fc.size() == 0);
    CHECK(fc.run().entries.empty());
  }

  TEST_CASE("results can be looked up by name") {
    atask::FunctionCollection<std::string> fc;
    fc.add("greet", [] { return std::string("hello"); });
    auto r = fc.run();
    REQUIRE(r.find("greet") != nullptr);
    CHECK(r.find("greet")->value == "hello");
    CHECK(r.find("missing") == nullptr);
    CHECK(what_of<atask::Error>([&] { (void)r.at("missing"); }) ==
          "CollectionResult::at() - no function named 'missing' in this run");
  }

  TEST_CASE("a run works on a snapshot: functions added during a run count from the next run") {
    atask::FunctionCollection<int> fc;
    fc.add("adder", [&] {
      if (!fc.contains("added")) fc.add("added", [] { return 2; });
      return 1;
    });
    auto first = fc.run();
    CHECK(names_of(first) == std::vector<std::string>{"adder"});
    auto second = fc.run();
    CHECK(names_of(second) == std::vector<std::string>{"adder", "added"});
  }

  TEST_CASE("registration and runs may happen from many threads at once") {
    atask::FunctionCollection<int> fc;
    std::atomic<int> calls{0};
    {
      Counter go;  // all four start together
      std::vector<std::jthread> ts;
      for (int t = 0; t < 2; ++t)
        ts.emplace_back([&, t] {
          go.bump();
          go.wait_for_at_least(4);
          for (int i = 0; i < 100; ++i) {
            const auto name = std::to_string(t) + "-" + std::to_string(i);
            fc.add(
                name, [&calls] { return ++calls; }, i % 7);
            if (i % 3 == 0) fc.remove(name);
          }
        });
      for (int t = 0; t < 2; ++t)
        ts.emplace_back([&] {
          go.bump();
          go.wait_for_at_least(4);
          for (int i = 0; i < 20; ++i) {
            auto r = fc.run();
            CHECK(r.all_ok);
            for (std::size_t k = 1; k < r.entries.size(); ++k)
              CHECK(r.entries[k - 1].priority <= r.entries[k].priority);
          }
        });
    }
    CHECK(fc.size() == 2 * (100 - 34));
    CHECK(fc.run().entries.size() == fc.size());
  }

  TEST_CASE(
      "a task collection runs its functions on pool threads and keeps the priority order in its result") {
    StartedSupervisor sv(options("tc"));
    atask::TaskCollection<std::thread::id> tc(sv);
    tc.add(
        "b", [] { return std::this_thread::get_id(); }, 20);
    tc.add(
        "a", [] { return std::this_thread::get_id(); }, 10);
    tc.add(
        "c", [] { return std::this_thread::get_id(); }, 30);
    auto r = tc.run();
    CHECK(r.all_ok);
    CHECK(names_of(r) == std::vector<std::string>{"a", "b", "c"});
    for (const auto& e : r.entries) {
      REQUIRE(e.value.has_value());
      CHECK(*e.value != std::this_thread::get_id());
    }
  }

  TEST_CASE("a task collection runs its functions in parallel") {
    // Each function returns its value only once both have begun: that
    // happens only if they run at the same time.
    Counter both;
    StartedSupervisor sv(options("tcpar"));
    atask::TaskCollection<int> tc(sv, {.timeout = patience});
    tc.add("left", [&] {
      both.bump();
      return both.wait_for_at_least(2) ? 1 : -1;
    });
    tc.add("right", [&] {
      both.bump();
      return both.wait_for_at_least(2) ? 2 : -2;
    });
    auto r = tc.run();
    CHECK(r.all_ok);
    CHECK(r.at("left").value == 1);
    CHECK(r.at("right").value == 2);
  }

  TEST_CASE("a task collection reports a function that throws while the others succeed") {
    StartedSupervisor sv(options("tcerr"));
    atask::TaskCollection<int> tc(sv);
    std::atomic<int> sum{0};
    tc.add("one", [&] { return sum += 1; });
    tc.add("boom", []() -> int { throw std::runtime_error("task boom"); });
    tc.add("ten", [&] { return sum += 10; });
    auto r = tc.run();
    CHECK(sum == 11);
    CHECK_FALSE(r.all_ok);
    CHECK(r.at("one").ok());
    CHECK(r.at("ten").ok());
    CHECK(r.at("boom").error_message == "task boom");
    CHECK_THROWS_AS(std::rethrow_exception(r.at("boom").error), std::runtime_error);
  }

  TEST_CASE("a function still running at the timeout is reported as a timeout and run returns") {
    Event gate, started;
    StartedSupervisor sv(options("tctime"));
    OpenOnExit open{&gate};
    atask::TaskCollection<> tc(sv, {.timeout = 50ms});
    tc.add("quick", [] {});
    tc.add("stuck", [&] {
      started.set();
      gate.wait_for(patience);
    });
    auto r = tc.run();
    CHECK(started.is_set());
    CHECK_FALSE(r.all_ok);
    CHECK(r.at("quick").ok());
    const auto& stuck = r.at("stuck");
    CHECK_FALSE(stuck.ok());
    CHECK(stuck.error_message == "TaskCollection::run() - function 'stuck' did not finish within 50ms");
    CHECK_THROWS_AS(std::rethrow_exception(stuck.error), atask::TimeoutError);
  }

  TEST_CASE("a function that never started by the timeout is canceled") {
    Event gate;
    std::atomic<bool> second_ran{false};
    StartedSupervisor sv(options("tcqueue", 1));
    OpenOnExit open{&gate};
    atask::TaskCollection<> tc(sv, {.timeout = 50ms});
    tc.add(
        "blocker", [&] { gate.wait_for(patience); }, 1);
    tc.add(
        "queued", [&] { second_ran = true; }, 2);
    auto r = tc.run();
    CHECK_THROWS_AS(std::rethrow_exception(r.at("blocker").error), atask::TimeoutError);
    CHECK_THROWS_AS(std::rethrow_exception(r.at("queued").error), atask::TimeoutError);
    gate.set();
    sv.stop();
    CHECK_FALSE(second_ran);
    auto canceled = sv.tasks(atask::TaskStatus::canceled);
    REQUIRE(canceled.size() == 1);
    CHECK(canceled[0].name == "queued");
  }

  TEST_CASE("a task collection on a supervisor that is not running reports an error per function") {
    atask::Supervisor sv(options("tcoff", 1));
    atask::TaskCollection<int> tc(sv);
    tc.add("a", [] { return 1; });
    tc.add("b", [] { return 2; });
    auto r = tc.run();  // returns at once, no hang
    CHECK_FALSE(r.all_ok);
    REQUIRE(r.entries.size() == 2);
    for (const auto& e : r.entries) {
      CHECK_THROWS_AS(std::rethrow_exception(e.error), atask::LifecycleError);
      CHECK(contains(e.error_message, "Supervisor::submit()"));
    }
  }

  TEST_CASE("task collection tasks carry the pool priority and the function names") {
    StartedSupervisor sv(options("tcprio", 1));
    atask::TaskCollection<> tc(sv, {.priority = Priority::high});
    CHECK(tc.options().priority == Priority::high);
    tc.add("x", [] {});
    tc.add("y", [] {});
    CHECK(tc.run().all_ok);
    auto done = sv.tasks(atask::TaskStatus::completed);
    std::set<std::string> names;
    for (const auto& t : done) {
      CHECK(t.priority == Priority::high);
      names.insert(t.name);
    }
    CHECK(names == std::set<std::string>{"x", "y"});
  }

  TEST_CASE("a task collection submits its functions in priority order") {
    StartedSupervisor sv(options("tcorder", 1));
    std::mutex m;
    std::vector<std::string> ran;
    atask::TaskCollection<> tc(sv);
    for (auto [n, p] : {std::pair{"c", 3}, {"a", 1}, {"d", 4}, {"b", 2}})
      tc.add(
          n,
          [&, n = std::string(n)] {
            std::lock_guard lk(m);
            ran.push_back(n);
          },
          p);
    auto r = tc.run();
    CHECK(r.all_ok);
    // One pool thread, one pool priority: the tasks run in submission order.
    CHECK(ran == std::vector<std::string>{"a", "b", "c", "d"});
    CHECK(names_of(r) == ran);
  }

  TEST_CASE("a task collection hands back move-only results") {
    StartedSupervisor sv(options("tcmove"));
    atask::TaskCollection<std::unique_ptr<int>> tc(sv);
    tc.add("seven", [] { return std::make_unique<int>(7); });
    auto r = tc.run();
    REQUIRE(r.all_ok);
    REQUIRE(r.at("seven").value.has_value());
    CHECK(**r.at("seven").value == 7);
  }

  TEST_CASE("a task collection rejects a negative timeout and bad registrations") {
    atask::Supervisor sv(options("tcbad", 1));
    CHECK(what_of<atask::OptionsError>([&] { atask::TaskCollection<> tc(sv, {.timeout = -1ms}); }) ==
          "TaskCollection::TaskCollection() - timeout must be >= 0 (got -1ms)");
    atask::TaskCollection<> tc(sv);
    tc.add("x", [] {});
    CHECK(what_of<atask::OptionsError>([&] { tc.add("x", [] {}); }) ==
          "TaskCollection::add() - a function named 'x' is already registered");
    CHECK_THROWS_AS(tc.add("", [] {}), atask::OptionsError);
    CHECK(tc.remove("x"));
    CHECK(tc.empty());
  }
}
