#include <atask/locker.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

using namespace std::chrono_literals;

using namespace test;

namespace {

// Holds a Locker on its own thread from the moment it returns until
// release() (or its destruction): a deterministic "someone else has it".
class Holder {
 public:
  explicit Holder(atask::Locker& lk)
      : thread_([&lk, this] {
          auto g = lk.lock();
          took_ = static_cast<bool>(g);
          held_.set();
          release_.wait_for(patience);
        }) {
    REQUIRE(held_.wait_for(patience));
    REQUIRE(took_);
  }
  ~Holder() { release(); }
  void release() {
    release_.set();
    if (thread_.joinable()) thread_.join();
  }

 private:
  Event held_, release_;
  bool took_ = false;
  std::jthread thread_;
};

}  // namespace

TEST_SUITE("locker") {
  TEST_CASE("a guard holds the lock until its scope ends") {
    atask::Locker lk({.timeout = 1s, .name = "scope"});
    {
      auto g = lk.lock();
      CHECK(g);
      CHECK(g.owns_lock());
      std::jthread([&] { CHECK_FALSE(lk.try_lock()); }).join();
    }
    std::jthread([&] { CHECK(lk.try_lock()); }).join();
    CHECK(lk.failures() == 0);
  }

  TEST_CASE("the critical handler is called when another thread holds the lock past the timeout") {
    std::atomic<int> calls{0};
    std::string seen;
    atask::Locker lk({.timeout = 50ms,
                      .on_critical =
                          [&](const atask::Locker& l) {
                            ++calls;
                            seen = l.name();
                          },
                      .name = "db"});
    Holder holder(lk);
    auto g = lk.lock();
    CHECK_FALSE(g);
    CHECK(calls == 1);
    CHECK(seen == "db");
    CHECK(lk.failures() == 1);
    holder.release();
    auto again = lk.lock();  // free again: taken, no new failure
    CHECK(again);
    CHECK(calls == 1);
    CHECK(lk.failures() == 1);
  }

  TEST_CASE("wrap returns nullopt when the lock cannot be taken and the result when it can") {
    int critical = 0;
    atask::Locker lk({.timeout = 20ms, .on_critical = [&](const atask::Locker&) { ++critical; }});
    int runs = 0;
    auto twice = lk.wrap([&](int x) {
      ++runs;
      return 2 * x;
    });
    auto touch = lk.wrap([&] { ++runs; });
    static_assert(std::is_same_v<decltype(twice(1)), std::optional<int>>);
    static_assert(std::is_same_v<decltype(touch()), bool>);
    CHECK(twice(21) == 42);
    CHECK(touch());
    CHECK(runs == 2);
    {
      Holder holder(lk);
      CHECK(twice(21) == std::nullopt);
      CHECK_FALSE(touch());
    }
    CHECK(runs == 2);
    CHECK(critical == 2);
    CHECK(lk.failures() == 2);
    CHECK(twice(1) == 2);
  }

  TEST_CASE("a wrapped callable serialises its callers") {
    atask::Locker lk({.timeout = patience});
    long counter = 0;  // not atomic: the locker is what protects it
    auto inc = lk.wrap([&] { ++counter; });
    {
      std::vector<std::jthread> ts;
      for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
          for (int i = 0; i < 1000; ++i) CHECK(inc());
        });
    }
    CHECK(counter == 4000);
    CHECK(lk.failures() == 0);
  }

  TEST_CASE("a wrapped callable that throws releases the lock") {
    atask::Locker lk({.timeout = 1s});
    auto boom = lk.wrap([]() -> int { throw std::runtime_error("inside"); });
    CHECK_THROWS_WITH_AS(boom(), "inside", std::runtime_error);
    std::jthread([&] { CHECK(lk.try_lock()); }).join();
  }

  TEST_CASE("a negative timeout is rejected") {
    CHECK(what_of<atask::OptionsError>([] { atask::Locker lk({.timeout = -1ms}); }) ==
          "Locker::Locker() - timeout must be >= 0 (got -1ms)");
    atask::Locker zero({.timeout = 0ms});  // 0 = one try
    CHECK(zero.lock());
  }

  TEST_CASE("a non-recursive locker refuses to be locked again by its holder") {
    atask::Locker lk({.timeout = 1s, .name = "once"});
    auto g = lk.lock();
    REQUIRE(g);
    CHECK(what_of<atask::LifecycleError>([&] { auto again = lk.lock(); }) ==
          "Locker::lock() - locker 'once' is already held by this thread (it is not recursive)");
    CHECK_THROWS_AS((void)lk.try_lock(), atask::LifecycleError);
    CHECK(lk.failures() == 0);
  }

  TEST_CASE("a recursive locker may be re-entered by its holder and the outermost guard releases it") {
    atask::Locker lk({.timeout = 1s, .recursive = true});
    CHECK(lk.recursive());
    auto outer = lk.lock();
    REQUIRE(outer);
    {
      auto inner = lk.lock();
      CHECK(inner);
      auto nested = lk.wrap([] { return 7; });
      CHECK(nested() == 7);
    }
    std::jthread([&] { CHECK_FALSE(lk.try_lock()); }).join();  // still held by outer
    outer.unlock();
    CHECK_FALSE(outer);
    std::jthread([&] { CHECK(lk.try_lock()); }).join();
  }

  TEST_CASE("try_lock_for gives up quietly without calling the handler") {
    int critical = 0;
    atask::Locker lk({.timeout = 1s, .on_critical = [&](const atask::Locker&) { ++critical; }});
    Holder holder(lk);
    CHECK_FALSE(lk.try_lock_for(10ms));
    CHECK_FALSE(lk.try_lock());
    CHECK(critical == 0);
    CHECK(lk.failures() == 0);
    holder.release();
    CHECK(lk.try_lock_for(patience));
  }

  TEST_CASE("moving a guard moves the ownership and unlock releases early") {
    atask::Locker lk({.timeout = 1s});
    auto a = lk.lock();
    REQUIRE(a);
    atask::LockerGuard b = std::move(a);
    CHECK_FALSE(a);
    CHECK(b);
    std::jthread([&] { CHECK_FALSE(lk.try_lock()); }).join();
    b.unlock();
    CHECK_FALSE(b);
    b.unlock();  // a second unlock is a no-op
    std::jthread([&] { CHECK(lk.try_lock()); }).join();
  }

  TEST_CASE("what the critical handler throws comes out of lock") {
    atask::Locker lk({.timeout = 10ms, .on_critical = [](const atask::Locker& l) {
                        throw std::runtime_error("critical: " + l.name());
                      }});
    Holder holder(lk);
    CHECK_THROWS_WITH_AS((void)lk.lock(), "critical: locker", std::runtime_error);
    CHECK(lk.failures() == 1);
  }

  TEST_CASE("the default critical handler logs at critical level") {
    std::ostringstream given_out, named_out;
    auto given = std::make_shared<spdlog::logger>(
        "given", std::make_shared<spdlog::sinks::ostream_sink_mt>(given_out));
    {
      atask::Locker lk({.timeout = 10ms, .name = "cfg", .logger = given});
      Holder holder(lk);
      CHECK_FALSE(lk.lock());
    }
    CHECK(contains(given_out.str(), "[critical]"));
    CHECK(contains(given_out.str(), "Locker 'cfg' - lock not taken within 10ms (failure #1)"));

    // Without a logger option: spdlog's registered "atask" logger.
    auto named = std::make_shared<spdlog::logger>(
        "atask", std::make_shared<spdlog::sinks::ostream_sink_mt>(named_out));
    spdlog::register_logger(named);
    struct Drop {
      ~Drop() { spdlog::drop("atask"); }
    } drop;
    atask::Locker lk({.timeout = 10ms, .name = "reg"});
    Holder holder(lk);
    CHECK_FALSE(lk.lock());
    CHECK(contains(named_out.str(), "Locker 'reg' - lock not taken within 10ms (failure #1)"));
  }
}
