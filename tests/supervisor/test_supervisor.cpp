#include <atask/supervisor.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <boost/asio/awaitable.hpp>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using atask::Priority;
using atask::StopStage;
using atask::TaskStatus;

using namespace test;

namespace {

// Blocks until `st` is requested, without polling; gives up after the
// patience (the test then fails on what the task returned).
void wait_for_stop(std::stop_token st) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lk(m);
  cv.wait_for(lk, st, patience, [] { return false; });
}

// Submits a task that takes a pool slot and holds it until `open` is set
// (at the latest after the patience); returns once the task has begun.
atask::TaskHandle<void> hold_slot(atask::Supervisor& sv, const Event& open,
                                  const atask::TaskOptions& o = {}) {
  auto entered = std::make_shared<Event>();
  auto t = sv.submit(o, [entered, &open] {
    entered->set();
    open.wait_for();
  });
  REQUIRE(entered->wait_for());
  return t;
}

}  // namespace

TEST_SUITE("supervisor") {
  // -- lifecycle -------------------------------------------------------------------

  TEST_CASE("a started supervisor runs tasks and stops with a completed report") {
    atask::Supervisor sv(options("lc"));
    CHECK_FALSE(sv.is_running());
    CHECK(sv.id() == "lc");
    CHECK(sv.info().state == atask::SupervisorState::created);
    sv.start();
    CHECK(sv.is_running());
    CHECK(sv.info().state == atask::SupervisorState::running);
    auto t = sv.submit(
        {}, [](int a, int b) { return a * b; }, 6, 7);
    CHECK(t.get_for(patience) == 42);
    auto r = sv.stop();
    CHECK(r.completed);
    CHECK_FALSE(r.already_stopped);
    CHECK(r.stage == StopStage::warm);
    CHECK(r.canceled == 0);
    CHECK(r.abandoned.empty());
    CHECK_FALSE(sv.is_running());
    CHECK(sv.info().state == atask::SupervisorState::stopped);
  }

  TEST_CASE("starting twice throws LifecycleError") {
    atask::Supervisor sv(options("twice", 1));
    sv.start();
    CHECK_THROWS_WITH_AS(sv.start(), doctest::Contains("Supervisor::start()"), atask::LifecycleError);
    CHECK(sv.is_running());
  }

  TEST_CASE("starting after stop throws LifecycleError") {
    atask::Supervisor sv(options("again", 1));
    sv.start();
    sv.stop();
    CHECK_THROWS_WITH_AS(sv.start(), doctest::Contains("Supervisor::start()"), atask::LifecycleError);
    CHECK_FALSE(sv.is_running());
  }

  TEST_CASE("submit and post before start throw LifecycleError naming the call and the state") {
    atask::Supervisor sv(options("early", 1));
    auto msg = what_of<atask::LifecycleError>([&] { (void)sv.submit({}, [] { return 1; }); });
    CHECK(contains(msg, "Supervisor::submit()"));
    CHECK(contains(msg, "'early'"));
    CHECK(contains(msg, "created"));
    msg = what_of<atask::LifecycleError>([&] { sv.post(Priority::normal, [] {}); });
    CHECK(contains(msg, "Supervisor::post()"));
    CHECK(contains(msg, "created"));
    CHECK(sv.info().tasks.submitted[atask::index(Priority::normal)] == 0);
  }

  TEST_CASE("submit and post after stop throw LifecycleError naming the call and the state") {
    StartedSupervisor sv(options("late", 1));
    sv.stop();
    auto msg = what_of<atask::LifecycleError>([&] { (void)sv.submit({}, [] { return 1; }); });
    CHECK(contains(msg, "Supervisor::submit()"));
    CHECK(contains(msg, "'late'"));
    CHECK(contains(msg, "stopped"));
    msg = what_of<atask::LifecycleError>([&] { sv.post(Priority::high, [] {}); });
    CHECK(contains(msg, "Supervisor::post()"));
    CHECK(contains(msg, "stopped"));
  }

  TEST_CASE("submit while stopping throws LifecycleError naming the stopping state") {
    Event open;
    StartedSupervisor sv(options("closing", 1));
    OpenOnExit guard{&open};
    auto busy = hold_slot(sv, open);
    auto r = sv.stop({.wait = false});
    CHECK_FALSE(r.completed);
    auto msg = what_of<atask::LifecycleError>([&] { (void)sv.submit({}, [] { return 1; }); });
    CHECK(contains(msg, "Supervisor::submit()"));
    CHECK(contains(msg, "stopping"));
    CHECK(sv.info().state == atask::SupervisorState::stopping);
    open.set();
    CHECK(block_within(sv).completed);
  }

  TEST_CASE("post runs a fire-and-forget callable on the pool") {
    std::promise<std::thread::id> ran;
    auto f = ran.get_future();
    StartedSupervisor sv(options("post", 1));
    sv.post(Priority::low, [&] { ran.set_value(std::this_thread::get_id()); });
    REQUIRE(f.wait_for(patience) == std::future_status::ready);
    CHECK(f.get() != std::this_thread::get_id());
    CHECK(sv.info().active_tasks == 0);  // no registry entry for posts
  }

  TEST_CASE("a second stop returns a report marked already_stopped") {
    StartedSupervisor sv(options("stop2", 1));
    auto first = sv.stop();
    CHECK(first.completed);
    CHECK_FALSE(first.already_stopped);
    auto second = sv.stop();
    CHECK(second.already_stopped);
    CHECK(second.stage == first.stage);
  }

  TEST_CASE("stop of a never-started supervisor completes at once and forbids start") {
    atask::Supervisor sv(options("never", 1));
    auto r = sv.stop();
    CHECK(r.completed);
    CHECK_FALSE(r.already_stopped);
    CHECK(r.stage == StopStage::none);
    CHECK(sv.info().state == atask::SupervisorState::stopped);
    CHECK_THROWS_AS(sv.start(), atask::LifecycleError);
    CHECK(sv.stop().already_stopped);
  }

  TEST_CASE("stop while another stop is under way waits for it") {
    Event entered, open;
    StartedSupervisor sv(options("stopstop", 1));
    OpenOnExit guard{&open};
    auto busy = sv.submit({}, [&] {
      entered.set();
      open.wait_for();
      return 5;
    });
    REQUIRE(entered.wait_for());
    CHECK_FALSE(sv.stop({.wait = false}).completed);
    open.set();
    auto r = sv.stop();
    CHECK(r.completed);
    CHECK_FALSE(r.already_stopped);
    CHECK(r.stage == StopStage::warm);
    CHECK(busy.get_for(patience) == 5);
    CHECK(sv.stop().already_stopped);
  }

  TEST_CASE("stop called from inside a task returns at once and the supervisor finishes stopping") {
    StartedSupervisor sv(options("inner", 1));
    auto t = sv.submit({}, [&] { return sv.stop(); });
    REQUIRE(t.wait_for(patience));
    const atask::StopReport& inner = t.get();
    CHECK_FALSE(inner.completed);
    CHECK_FALSE(inner.already_stopped);
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::warm);
    CHECK(r.abandoned.empty());
    CHECK(sv.info().state == atask::SupervisorState::stopped);
  }

  TEST_CASE("block called from inside a task throws LifecycleError") {
    StartedSupervisor sv(options("blockin", 1));
    auto t = sv.submit({}, [&] { return what_of<atask::LifecycleError>([&] { sv.block(); }); });
    REQUIRE(t.wait_for(patience));
    CHECK(contains(t.get(), "Supervisor::block()"));
    CHECK(sv.is_running());
    CHECK(sv.stop().completed);
  }

  TEST_CASE("block before start throws LifecycleError") {
    atask::Supervisor sv(options("blockearly", 1));
    CHECK_THROWS_WITH_AS(sv.block(), doctest::Contains("Supervisor::block()"), atask::LifecycleError);
  }

  TEST_CASE("destroying a running supervisor stops it") {
    Event entered, open;
    atask::TaskHandle<int> running, delayed;
    {
      atask::Supervisor sv(options("dtor", 1));
      sv.start();
      OpenOnExit guard{&open};
      running = sv.submit({}, [&] {
        entered.set();
        open.wait_for();
        return 3;
      });
      REQUIRE(entered.wait_for());
      delayed = sv.submit({.delay = 1h}, [] { return 5; });
      open.set();
    }
    // stop() with the default options: running tasks finish, delayed ones are canceled.
    CHECK(running.get_for(patience) == 3);
    CHECK(delayed.status() == TaskStatus::canceled);
  }

  // -- options ---------------------------------------------------------------------

  TEST_CASE("invalid options throw OptionsError naming the constructor and the field") {
    struct Case {
      const char* field;
      atask::SupervisorOptions options;
    };
    std::vector<Case> cases;
    cases.push_back({"pool_size", {.pool_size = -1}});
    cases.push_back({"reserve_normal", {.pool_size = 1, .reserve_normal = -1}});
    cases.push_back({"reserve_high", {.pool_size = 1, .reserve_high = -2}});
    cases.push_back({"min_threads", {.pool_size = 1, .min_threads = -1}});
    cases.push_back({"max_threads", {.pool_size = 1, .max_threads = -1}});
    cases.push_back(
        {"max_threads", {.pool_size = 2, .reserve_normal = 1, .reserve_high = 2, .max_threads = 4}});
    cases.push_back({"max_threads", {.pool_size = 0, .reserve_high = 3, .max_threads = 3}});
    cases.push_back({"min_threads", {.pool_size = 1, .min_threads = 3, .max_threads = 2}});
    cases.push_back({"id", {.id = ""}});
    cases.push_back({"history_size", {.pool_size = 1, .history_size = 0}});
    cases.push_back({"idle_timeout", {.pool_size = 1, .idle_timeout = -1ms}});
    cases.push_back({"timeout_warning", {.pool_size = 1, .timeout_warning = -1ms}});
    cases.push_back({"timeout_critical", {.pool_size = 1, .timeout_critical = -5ms}});
    cases.push_back({"default_aloop", {.pool_size = 1, .default_aloop = ""}});
    cases.push_back({"prespawn", {.pool_size = 1, .prespawn = true}});
    for (auto& c : cases) {
      CAPTURE(c.field);
      c.options.logger = quiet_logger();
      auto msg = what_of<atask::OptionsError>([&] { atask::Supervisor sv(c.options); });
      CAPTURE(msg);
      CHECK(contains(msg, "Supervisor::Supervisor()"));
      CHECK(contains(msg, c.field));
    }
  }

  TEST_CASE("stop and resize with invalid values throw OptionsError naming the call") {
    StartedSupervisor sv(options("badargs", 1));
    CHECK_THROWS_WITH_AS(sv.stop({.warm_timeout = -1ms}), doctest::Contains("Supervisor::stop()"),
                         atask::OptionsError);
    CHECK_THROWS_WITH_AS(sv.resize({.pool_size = -3}), doctest::Contains("Supervisor::resize()"),
                         atask::OptionsError);
    CHECK(sv.is_running());
    CHECK(sv.stop().completed);
  }

  // -- stop stages -----------------------------------------------------------------

  TEST_CASE("the warm stage lets a running task finish") {
    Event entered, open;
    StartedSupervisor sv(options("warm", 1));
    OpenOnExit guard{&open};
    auto t = sv.submit({.name = "slow"}, [&] {
      entered.set();
      open.wait_for();
      return 11;
    });
    REQUIRE(entered.wait_for());
    auto begun = sv.stop({.wait = false});
    CHECK_FALSE(begun.completed);
    CHECK_FALSE(t.done());
    open.set();
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::warm);
    CHECK(r.stop_requested == 0);
    CHECK(r.abandoned.empty());
    CHECK(t.status() == TaskStatus::completed);
    CHECK(t.get_for(patience) == 11);
  }

  TEST_CASE("stop with cancel_queued cancels the queued tasks") {
    Event open;
    StartedSupervisor sv(options("cq", 1));
    OpenOnExit guard{&open};
    auto busy = hold_slot(sv, open);
    std::vector<atask::TaskHandle<int>> queued;
    for (int i = 0; i < 3; ++i) queued.push_back(sv.submit({}, [i] { return i; }));
    for (auto& q : queued) CHECK(q.status() == TaskStatus::queued);
    sv.stop({.cancel_queued = true, .wait = false});
    for (auto& q : queued) {
      CHECK(q.status() == TaskStatus::canceled);
      CHECK_THROWS_AS(q.get_for(patience), atask::TaskCanceled);
      CHECK(contains(q.info().error, "canceled"));
    }
    open.set();
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::warm);
    CHECK(r.canceled == 3);
    CHECK(busy.status() == TaskStatus::completed);
    CHECK(sv.info().tasks.canceled[atask::index(Priority::normal)] == 3);
  }

  TEST_CASE("stop without cancel_queued drains the queued tasks") {
    Event open;
    StartedSupervisor sv(options("drain", 1));
    OpenOnExit guard{&open};
    auto busy = hold_slot(sv, open);
    std::vector<atask::TaskHandle<int>> queued;
    for (int i = 0; i < 3; ++i)
      queued.push_back(sv.submit({.priority = Priority::low}, [i] { return i * 10; }));
    sv.stop({.cancel_queued = false, .wait = false});
    for (auto& q : queued) CHECK(q.status() == TaskStatus::queued);
    open.set();
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::warm);
    CHECK(r.canceled == 0);
    for (int i = 0; i < 3; ++i) {
      CHECK(queued[i].status() == TaskStatus::completed);
      CHECK(queued[i].get_for(patience) == i * 10);
    }
  }

  TEST_CASE("delayed tasks are canceled at stop even when queued tasks drain") {
    StartedSupervisor sv(options("delayed", 1));
    auto later = sv.submit({.delay = 1h, .name = "later"}, [] { return 1; });
    CHECK(later.status() == TaskStatus::delayed);
    auto r = sv.stop({.cancel_queued = false});
    CHECK(r.completed);
    CHECK(r.canceled == 1);
    CHECK(later.status() == TaskStatus::canceled);
    CHECK_THROWS_AS(later.get_for(patience), atask::TaskCanceled);
    CHECK_FALSE(later.info().started_at.has_value());
  }

  TEST_CASE("an eta holds a task until that time - pool and coroutine tasks alike - cancel drops it") {
    using clock = std::chrono::system_clock;
    StartedSupervisor sv(options("eta", 1));
    // Each task gives the time it started: never before its eta.
    const auto eta = clock::now() + 200ms;
    auto pooled = sv.submit({.eta = eta, .name = "pooled"}, [] { return clock::now(); });
    auto co = sv.submit({.eta = eta, .name = "co"},
                        []() -> boost::asio::awaitable<clock::time_point> { co_return clock::now(); });
    CHECK(co.kind() == atask::TaskKind::coroutine);
    CHECK(pooled.get_for(patience) >= eta);
    CHECK(co.get_for(patience) >= eta);
    CHECK(pooled.info().queued_at.has_value());

    // Far away: delayed, holding nothing; a cancel drops it and it never runs.
    std::atomic<bool> ran{false};
    auto far = sv.submit({.eta = clock::now() + 1h}, [&] { ran = true; });
    auto far_co = sv.submit({.eta = clock::now() + 1h}, [&]() -> boost::asio::awaitable<void> {
      ran = true;
      co_return;
    });
    CHECK(far.status() == TaskStatus::delayed);
    CHECK(far_co.status() == TaskStatus::delayed);
    CHECK(far.cancel());
    CHECK(far_co.cancel());
    CHECK_THROWS_AS(far.get_for(patience), atask::TaskCanceled);
    CHECK_THROWS_AS(far_co.get_for(patience), atask::TaskCanceled);
    // The pool's one slot was free all along.
    CHECK(sv.submit({}, [] { return 3; }).get_for(patience) == 3);
    CHECK_FALSE(ran.load());
  }

  TEST_CASE("an eta in the past runs at once - delay and eta together are refused") {
    using clock = std::chrono::system_clock;
    StartedSupervisor sv(options("eta-past", 1));
    auto past = sv.submit({.eta = clock::now() - 1h}, [] { return 1; });
    CHECK(past.status() != TaskStatus::delayed);
    CHECK(past.get_for(patience) == 1);
    auto past_co =
        sv.submit({.eta = clock::now() - 1h}, []() -> boost::asio::awaitable<int> { co_return 2; });
    CHECK(past_co.status() != TaskStatus::delayed);
    CHECK(past_co.get_for(patience) == 2);

    CHECK_THROWS_WITH_AS(sv.submit({.delay = 1s, .eta = clock::now() + 1s}, [] {}),
                         doctest::Contains("set delay or eta, not both"), atask::OptionsError);
    CHECK_THROWS_WITH_AS(
        sv.submit({.delay = 1s, .eta = clock::now()}, []() -> boost::asio::awaitable<void> { co_return; }),
        doctest::Contains("set delay or eta, not both"), atask::OptionsError);
    CHECK_THROWS_AS(sv.submit({.delay = -1ms}, [] {}), atask::OptionsError);
  }

  TEST_CASE("a delay holds a coroutine task too - it is not spawned before it is due") {
    StartedSupervisor sv(options("co-delay", 1));
    const auto submitted = std::chrono::steady_clock::now();
    auto co =
        sv.submit({.delay = 200ms}, []() -> boost::asio::awaitable<std::chrono::steady_clock::time_point> {
          co_return std::chrono::steady_clock::now();
        });
    CHECK(co.get_for(patience) - submitted >= 200ms);
  }

  TEST_CASE("the soft stage requests stop of a running task after warm_timeout") {
    Event entered;
    StartedSupervisor sv(options("soft", 1));
    auto t = sv.submit({.name = "polite"}, [&](std::stop_token st) {
      entered.set();
      wait_for_stop(st);
      return 1;
    });
    REQUIRE(entered.wait_for());
    const auto t0 = std::chrono::steady_clock::now();
    auto r = sv.stop({.warm_timeout = 50ms, .soft_timeout = 10s});
    CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::soft);
    CHECK(r.stop_requested >= 1);
    CHECK(r.abandoned.empty());
    CHECK(t.status() == TaskStatus::completed);
    CHECK(t.get_for(patience) == 1);
  }

  TEST_CASE("the soft stage cancels tasks still queued") {
    Event entered;
    StartedSupervisor sv(options("softq", 1));
    auto busy = sv.submit({}, [&](std::stop_token st) {
      entered.set();
      wait_for_stop(st);
    });
    REQUIRE(entered.wait_for());
    auto waiting = sv.submit({}, [] { return 2; });
    auto r = sv.stop({.cancel_queued = false, .warm_timeout = 50ms, .soft_timeout = 10s});
    CHECK(r.stage == StopStage::soft);
    CHECK(r.canceled == 1);
    CHECK(waiting.status() == TaskStatus::canceled);
    CHECK_THROWS_AS(waiting.get_for(patience), atask::TaskCanceled);
    CHECK(busy.status() == TaskStatus::completed);
  }

  TEST_CASE("a supervisor destroyed under an abandoned task - the task's late return touches nothing freed") {
    // Run under AddressSanitizer and ThreadSanitizer this catches a task
    // that reports to the destroyed supervisor's books.
    auto gate = std::make_shared<Event>();
    auto left = std::make_shared<Event>();
    auto left_behind = std::make_shared<Event>();
    Event entered;
    std::optional<atask::TaskHandle<int>> stubborn, behind;
    // A thread started and joined first: a sanitizer's runtime starts its own
    // background thread with the process's first thread, and it stays.
    std::thread([] {}).join();
    const auto threads_before = thread_count();
    {
      StartedSupervisor sv(options("cold-gone", 1));
      stubborn = sv.submit({.name = "stubborn"}, [gate, left, &entered] {
        entered.set();
        gate->wait_for();  // ignores its stop token
        left->set();
        return 1;
      });
      REQUIRE(entered.wait_for());
      behind = sv.submit({.name = "behind"}, [] { return 2; });          // queued behind it on the one thread
      sv.post(Priority::normal, [left_behind] { left_behind->set(); });  // a fire-and-forget one too
      auto r = sv.stop({.cancel_queued = false, .warm_timeout = 50ms, .soft_timeout = 50ms});
      CHECK(r.stage == StopStage::cold);
      REQUIRE(r.abandoned.size() == 1);
    }  // ~Supervisor while a pool thread is still inside the task
    gate->set();
    REQUIRE(left->wait_for());
    // The detached thread leaves: wait until the process has no more
    // threads than before the supervisor (all of its threads are gone).
    CHECK(eventually([&] { return thread_count() <= threads_before; }));
    CHECK(stubborn->status() == TaskStatus::failed);
    CHECK_THROWS_AS(stubborn->get_for(patience), atask::TaskAbandoned);
    CHECK(behind->status() == TaskStatus::canceled);  // never started by the thread that came back
    CHECK_FALSE(left_behind->is_set());               // nor was the posted one run
  }

  TEST_CASE("the cold stage abandons a task that ignores its stop request") {
    // Shared with the task: the abandoned thread may still be inside it when
    // this test's scope ends.
    auto gate = std::make_shared<Event>();
    auto left = std::make_shared<Event>();
    Event entered;
    StartedSupervisor sv(options("cold", 1));
    OpenOnExit guard{gate.get()};
    auto stubborn = sv.submit({.name = "stubborn"}, [gate, left, &entered] {
      entered.set();
      gate->wait_for();  // ignores its stop token
      left->set();
      return 1;
    });
    REQUIRE(entered.wait_for());
    auto r = sv.stop({.warm_timeout = 50ms, .soft_timeout = 100ms});
    CHECK(r.completed);
    CHECK(r.stage == StopStage::cold);
    CHECK(r.stop_requested >= 1);
    REQUIRE(r.abandoned.size() == 1);
    CHECK(r.abandoned[0].id == stubborn.id());
    CHECK(r.abandoned[0].name == "stubborn");
    CHECK(r.abandoned[0].status == TaskStatus::started);
    REQUIRE(stubborn.done());
    CHECK(stubborn.status() == TaskStatus::failed);
    CHECK_THROWS_AS(stubborn.get_for(patience), atask::TaskAbandoned);
    CHECK(contains(stubborn.info().error, "abandoned"));
    CHECK(sv.info().state == atask::SupervisorState::stopped);
    gate->set();
    REQUIRE(left->wait_for());                       // the abandoned thread leaves user code
    CHECK(stubborn.status() == TaskStatus::failed);  // its late return changes nothing
  }

  // -- signals ---------------------------------------------------------------------

  TEST_CASE("SIGTERM starts a shutdown that block waits for") {
    StartedSupervisor sv({.id = "sigterm",
                          .pool_size = 1,
                          .handle_signals = true,
                          .signal_stop = {.cancel_queued = false, .warm_timeout = 1h, .soft_timeout = 1h}});
    auto t = sv.submit({}, [] { return 1; });
    CHECK(t.get_for(patience) == 1);
    std::raise(SIGTERM);
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::warm);
    CHECK_FALSE(sv.is_running());
  }

  TEST_CASE("a second signal moves a shutdown from warm to soft at once") {
    auto lines = std::make_shared<LineWaiter>();
    auto log = std::make_shared<spdlog::logger>("test", lines);
    log->set_level(spdlog::level::info);
    Event entered;
    StartedSupervisor sv({.id = "sig2",
                          .pool_size = 1,
                          .handle_signals = true,
                          .signal_stop = {.cancel_queued = false, .warm_timeout = 1h, .soft_timeout = 1h},
                          .logger = log});
    auto t = sv.submit({}, [&](std::stop_token st) {
      entered.set();
      wait_for_stop(st);
      return 2;
    });
    REQUIRE(entered.wait_for());
    std::raise(SIGINT);
    REQUIRE(lines->wait_for("stopping (warm stage"));
    CHECK_FALSE(sv.is_running());
    CHECK_FALSE(t.done());  // warm: the task is left alone
    std::raise(SIGINT);
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::soft);
    CHECK(r.stop_requested == 1);
    CHECK(r.abandoned.empty());
    CHECK(t.get_for(patience) == 2);
  }

  TEST_CASE(
      "a signal during a stop that waits for a step above the pool moves to the soft stage - the running "
      "task is asked to stop and the step ends") {
    auto lines = std::make_shared<LineWaiter>();
    auto log = std::make_shared<spdlog::logger>("test", lines);
    log->set_level(spdlog::level::info);
    Event entered, hook_waiting;
    std::optional<atask::TaskHandle<int>> t;
    atask::Supervisor sv({.id = "sig2s", .pool_size = 1, .handle_signals = true, .logger = log});
    // A step above the pool that waits for its task to finish, as a
    // distributed consumer does with the tasks it took.
    sv.add_step({.name = "waits", .depends_on = {"pool"}, .start = {}, .stop = [&](atask::Supervisor&) {
                   hook_waiting.set();
                   (void)t->wait_for(patience);
                 }});
    sv.start();
    t = sv.submit({}, [&](std::stop_token st) {
      entered.set();
      wait_for_stop(st);
      return 2;
    });
    REQUIRE(entered.wait_for());
    // A stop that waits keeps the supervisor open while the steps above
    // the pool stop (their tasks may still submit work).
    auto stopped = std::async(std::launch::async, [&] {
      return sv.stop({.cancel_queued = false, .warm_timeout = 1h, .soft_timeout = 1h});
    });
    REQUIRE(hook_waiting.wait_for());
    CHECK_FALSE(t->done());
    std::raise(SIGTERM);
    REQUIRE(lines->wait_for("moving to the soft stage"));
    CHECK(t->get_for(patience) == 2);  // it saw its stop request and returned
    REQUIRE(stopped.wait_for(patience) == std::future_status::ready);
    auto r = stopped.get();
    CHECK(r.completed);
    CHECK(r.stage == StopStage::soft);
    CHECK(r.stop_requested == 1);
    CHECK(r.abandoned.empty());
  }

  TEST_CASE("a third signal moves a shutdown to the cold stage at once") {
    auto lines = std::make_shared<LineWaiter>();
    auto log = std::make_shared<spdlog::logger>("test", lines);
    log->set_level(spdlog::level::info);
    auto gate = std::make_shared<Event>();
    Event entered;
    StartedSupervisor sv({.id = "sig3",
                          .pool_size = 1,
                          .handle_signals = true,
                          .signal_stop = {.cancel_queued = false, .warm_timeout = 1h, .soft_timeout = 1h},
                          .logger = log});
    OpenOnExit guard{gate.get()};
    auto t = sv.submit({}, [gate, &entered] {
      entered.set();
      gate->wait_for();
    });
    REQUIRE(entered.wait_for());
    std::raise(SIGTERM);
    REQUIRE(lines->wait_for("stopping (warm stage"));
    std::raise(SIGTERM);
    REQUIRE(lines->wait_for("soft stage"));
    CHECK_FALSE(t.done());  // soft: asked to stop, but it ignores that
    std::raise(SIGTERM);
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(r.stage == StopStage::cold);
    REQUIRE(r.abandoned.size() == 1);
    CHECK(r.abandoned[0].id == t.id());
    CHECK_THROWS_AS(t.get_for(patience), atask::TaskAbandoned);
    gate->set();
  }

  // -- introspection ---------------------------------------------------------------

  TEST_CASE(
      "info reports what runs and waits by priority along with pool sizes and aloops and task counters") {
    Event low_in, high_in, critical_in, open;
    atask::Supervisor sv({.id = "info",
                          .pool_size = 2,
                          .reserve_normal = 0,
                          .reserve_high = 0,
                          .max_threads = 6,
                          .logger = quiet_logger()});
    sv.create_aloop("net");
    sv.start();
    OpenOnExit guard{&open};
    (void)sv.default_aloop();
    auto blocker = [&](Event& entered) {
      entered.set();
      open.wait_for();
    };
    auto then_wait = [&] { open.wait_for(); };
    std::vector<atask::TaskHandle<void>> all;
    // One at a time: a running critical task counts against pool_size too.
    all.push_back(sv.submit({.priority = Priority::low}, blocker, std::ref(low_in)));
    REQUIRE(low_in.wait_for());
    all.push_back(sv.submit({.priority = Priority::high}, blocker, std::ref(high_in)));
    REQUIRE(high_in.wait_for());
    all.push_back(
        sv.submit({.priority = Priority::critical}, blocker, std::ref(critical_in)));  // past the limit
    REQUIRE(critical_in.wait_for());
    all.push_back(sv.submit({.priority = Priority::low}, then_wait));
    all.push_back(sv.submit({.priority = Priority::low}, then_wait));
    all.push_back(sv.submit({.priority = Priority::normal}, then_wait));
    all.push_back(sv.submit({.priority = Priority::high}, then_wait));
    auto dropped = sv.submit({.priority = Priority::low}, then_wait);
    CHECK(dropped.cancel());

    auto i = sv.info();
    CHECK(i.id == "info");
    CHECK(i.state == atask::SupervisorState::running);
    CHECK(i.pool.limits.pool_size == 2);
    CHECK(i.pool.limits.max_threads == 6);
    CHECK(i.pool.running[atask::index(Priority::low)] == 1);
    CHECK(i.pool.running[atask::index(Priority::normal)] == 0);
    CHECK(i.pool.running[atask::index(Priority::high)] == 1);
    CHECK(i.pool.running[atask::index(Priority::critical)] == 1);
    CHECK(i.pool.running_total == 3);
    CHECK(i.pool.queued[atask::index(Priority::low)] == 2);
    CHECK(i.pool.queued[atask::index(Priority::normal)] == 1);
    CHECK(i.pool.queued[atask::index(Priority::high)] == 1);
    CHECK(i.pool.queued_total == 4);
    CHECK(i.active_tasks == 7);
    CHECK(i.tasks.submitted == std::array<std::uint64_t, 4>{4, 1, 2, 1});
    CHECK(i.tasks.canceled == std::array<std::uint64_t, 4>{1, 0, 0, 0});
    REQUIRE(i.aloops.size() == 2);
    auto find = [&](std::string_view n) {
      return std::find_if(i.aloops.begin(), i.aloops.end(), [&](auto& a) { return a.name == n; });
    };
    REQUIRE(find("net") != i.aloops.end());
    CHECK_FALSE(find("net")->is_default);
    CHECK(find("net")->running);
    REQUIRE(find("default") != i.aloops.end());
    CHECK(find("default")->is_default);
    CHECK(find("default")->running);

    open.set();
    auto failing = sv.submit({.priority = Priority::normal}, []() -> int { throw std::runtime_error("no"); });
    for (auto& t : all) REQUIRE(t.wait_for(patience));
    REQUIRE(failing.wait_for(patience));
    // The books are final once the supervisor has stopped.
    CHECK(sv.stop().completed);
    i = sv.info();
    CHECK(i.state == atask::SupervisorState::stopped);
    CHECK(i.active_tasks == 0);
    CHECK(i.tasks.submitted == std::array<std::uint64_t, 4>{4, 2, 2, 1});
    CHECK(i.tasks.completed == std::array<std::uint64_t, 4>{3, 1, 2, 1});
    CHECK(i.tasks.failed == std::array<std::uint64_t, 4>{0, 1, 0, 0});
    CHECK(i.tasks.canceled == std::array<std::uint64_t, 4>{1, 0, 0, 0});
  }

  TEST_CASE("tasks lists active tasks first then the history oldest first and filters by status") {
    Event entered, open;
    StartedSupervisor sv(options("list", 1));
    OpenOnExit guard{&open};
    // One slot: the blocker starts only after e1 and e2 have finished and
    // been recorded (same FIFO queue, the slot frees after the books).
    auto e1 = sv.submit({.name = "e1"}, [] { return 1; });
    auto e2 = sv.submit({.name = "e2"}, [] { return 2; });
    auto b = sv.submit({.name = "b"}, [&] {
      entered.set();
      open.wait_for();
      return 3;
    });
    REQUIRE(entered.wait_for());
    auto q = sv.submit({.name = "q"}, [] { return 4; });

    auto ts = sv.tasks();
    REQUIRE(ts.size() == 4);
    std::vector<std::string> active{ts[0].name, ts[1].name};
    std::sort(active.begin(), active.end());
    CHECK(active == std::vector<std::string>{"b", "q"});
    CHECK(ts[2].name == "e1");
    CHECK(ts[2].id == e1.id());
    CHECK(ts[3].name == "e2");
    CHECK(ts[3].status == TaskStatus::completed);
    CHECK(ts[3].finished_at.has_value());

    auto started = sv.tasks(TaskStatus::started);
    REQUIRE(started.size() == 1);
    CHECK(started[0].id == b.id());
    CHECK(started[0].started_at.has_value());
    CHECK_FALSE(started[0].finished_at.has_value());
    auto queued = sv.tasks(TaskStatus::queued);
    REQUIRE(queued.size() == 1);
    CHECK(queued[0].id == q.id());
    CHECK_FALSE(queued[0].started_at.has_value());
    CHECK(sv.tasks(TaskStatus::completed).size() == 2);
    CHECK(sv.tasks(TaskStatus::failed).empty());

    open.set();
    REQUIRE(q.wait_for(patience));
    CHECK(sv.stop().completed);
    CHECK(sv.tasks(TaskStatus::completed).size() == 4);
    CHECK(sv.tasks(TaskStatus::started).empty());
  }

  TEST_CASE("the task history is bounded by history_size") {
    constexpr int n = 5000;
    StartedSupervisor sv({.id = "hist", .pool_size = 2, .history_size = 100});
    std::vector<atask::TaskHandle<int>> hs;
    hs.reserve(n);
    for (int i = 0; i < n; ++i) hs.push_back(sv.submit({}, [i] { return i; }));
    for (int i = 0; i < n; ++i) REQUIRE(hs[i].get_for(patience) == i);
    // Active tasks only leave the registry, so this order makes the bound exact.
    const auto active = sv.info().active_tasks;
    CHECK(sv.tasks().size() <= 100 + active);
    CHECK(sv.stop().completed);
    CHECK(sv.info().active_tasks == 0);
    auto ts = sv.tasks();
    CHECK(ts.size() == 100);
    CHECK(std::all_of(ts.begin(), ts.end(), [](auto& t) { return t.status == TaskStatus::completed; }));
    CHECK(sv.info().tasks.completed[atask::index(Priority::normal)] == n);
  }

  // The supervisor updates its books before a task publishes its final
  // status: a waiter that finds the task final returns at once, and info()
  // must already agree with it.
  TEST_CASE("a task whose get has returned is no longer counted as active") {
    StartedSupervisor sv(options("books"));
    int stale = 0;
    for (int i = 0; i < 20000; ++i) {
      auto t = sv.submit({}, [i] { return i; });
      REQUIRE(t.wait_for(patience));
      auto info = sv.info();
      if (info.active_tasks != 0 ||
          info.tasks.completed[atask::index(Priority::normal)] != std::uint64_t(i) + 1)
        ++stale;
    }
    CHECK(stale == 0);
  }

  // -- queue-time thresholds -------------------------------------------------------

  TEST_CASE("a task that waited past timeout_warning is handed to on_timeout_warning") {
    std::mutex m;
    std::vector<atask::TaskInfo> warned, critical;
    Event open;
    StartedSupervisor sv({.id = "warn",
                          .pool_size = 1,
                          .min_threads = 1,
                          .prespawn = true,
                          .timeout_warning = 50ms,
                          .on_timeout_warning =
                              [&](const atask::TaskInfo& i) {
                                std::lock_guard lk(m);
                                warned.push_back(i);
                              },
                          .on_timeout_critical =
                              [&](const atask::TaskInfo& i) {
                                std::lock_guard lk(m);
                                critical.push_back(i);
                              }});
    OpenOnExit guard{&open};
    auto blocker = hold_slot(sv, open, {.name = "blocker"});
    auto late = sv.submit({.name = "late"}, [] { return 1; });
    // The behaviour under test is about time: keep the slot busy until the
    // queued task has waited three times the threshold.
    std::this_thread::sleep_until(*late.info().queued_at + 150ms);
    open.set();
    CHECK(late.get_for(patience) == 1);
    auto quick = sv.submit({.name = "quick"}, [] { return 2; });
    CHECK(quick.get_for(patience) == 2);
    CHECK(sv.stop().completed);

    std::lock_guard lk(m);
    REQUIRE(warned.size() == 1);
    CHECK(warned[0].id == late.id());
    CHECK(warned[0].name == "late");
    CHECK(warned[0].status == TaskStatus::started);
    REQUIRE(warned[0].started_at.has_value());
    CHECK(*warned[0].started_at - *warned[0].queued_at >= 150ms);
    CHECK(critical.empty());  // timeout_critical is off
  }

  TEST_CASE("a task that waited past timeout_critical is handed to on_timeout_critical only") {
    std::mutex m;
    std::vector<atask::TaskInfo> warned, critical;
    Event open;
    StartedSupervisor sv({.id = "crit",
                          .pool_size = 1,
                          .min_threads = 1,
                          .prespawn = true,
                          .timeout_warning = 50ms,
                          .timeout_critical = 100ms,
                          .on_timeout_warning =
                              [&](const atask::TaskInfo& i) {
                                std::lock_guard lk(m);
                                warned.push_back(i);
                              },
                          .on_timeout_critical =
                              [&](const atask::TaskInfo& i) {
                                std::lock_guard lk(m);
                                critical.push_back(i);
                              }});
    OpenOnExit guard{&open};
    auto blocker = hold_slot(sv, open, {.name = "blocker"});
    auto late = sv.submit({.priority = Priority::high, .name = "very late"}, [] { return 1; });
    std::this_thread::sleep_until(*late.info().queued_at + 250ms);  // the time under test
    open.set();
    CHECK(late.get_for(patience) == 1);
    CHECK(sv.stop().completed);

    std::lock_guard lk(m);
    REQUIRE(critical.size() == 1);
    CHECK(critical[0].id == late.id());
    CHECK(critical[0].priority == Priority::high);
    CHECK(warned.empty());
  }

  // -- resize ----------------------------------------------------------------------

  TEST_CASE("resize through the supervisor starts queued tasks at once") {
    Event open;
    StartedSupervisor sv(options("resize", 1));
    OpenOnExit guard{&open};
    auto busy = hold_slot(sv, open);
    auto waiting = sv.submit({}, [] { return 9; });
    CHECK(waiting.status() == TaskStatus::queued);
    sv.resize({.pool_size = 2});
    CHECK(sv.info().pool.limits.pool_size == 2);
    REQUIRE(waiting.wait_for(patience));
    CHECK(waiting.get() == 9);
    CHECK_FALSE(busy.done());  // it started beside the blocker, not after it
    open.set();
    CHECK(sv.stop().completed);
  }

  // -- logging ---------------------------------------------------------------------

  TEST_CASE("a user-provided logger receives the supervisor's log lines") {
    std::ostringstream out;
    auto log =
        std::make_shared<spdlog::logger>("mine", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    log->set_level(spdlog::level::info);
    atask::Supervisor sv({.id = "logsv", .pool_size = 1, .logger = log});
    CHECK(&sv.logger() == log.get());
    sv.start();
    sv.stop();
    const auto text = out.str();
    CAPTURE(text);
    CHECK(contains(text, "[mine]"));
    CHECK(contains(text, "logsv: stopping"));
    CHECK(contains(text, "logsv: stopped"));
  }

  TEST_CASE("what a posted callable throws goes to the log") {
    std::ostringstream out;
    auto log =
        std::make_shared<spdlog::logger>("mine", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    log->set_level(spdlog::level::warn);
    StartedSupervisor sv({.id = "logpost", .pool_size = 1, .logger = log});
    sv.post(Priority::normal, [] { throw std::runtime_error("posted boom"); });
    auto after = sv.submit({}, [] { return 1; });  // the sv keeps running
    CHECK(after.get_for(patience) == 1);
    sv.stop();  // joins the pool threads: the log is complete
    const auto text = out.str();
    CAPTURE(text);
    CHECK(contains(text, "posted boom"));
  }
}
