#include <atask/step.hpp>

#include <atask/supervisor.hpp>
#include <atask/workers.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <future>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using atask::Step;
using atask::StopStage;

using namespace test;

namespace {

// What the hooks did, in order ("start a", "stop a"), from any thread.
class Journal {
 public:
  void add(std::string what) {
    std::lock_guard lk(m_);
    events_.push_back(std::move(what));
  }
  std::vector<std::string> events() const {
    std::lock_guard lk(m_);
    return events_;
  }
  // A step that only records its start and stop.
  Step step(const std::string& name, std::vector<std::string> depends_on = {}) {
    return {.name = name,
            .depends_on = std::move(depends_on),
            .start = [this, name](atask::Supervisor&) { add("start " + name); },
            .stop = [this, name](atask::Supervisor&) { add("stop " + name); }};
  }

 private:
  mutable std::mutex m_;
  std::vector<std::string> events_;
};

using Names = std::vector<std::string>;

// A logger that writes into a string stream, at the given level.
struct TextLog {
  explicit TextLog(spdlog::level::level_enum level)
      : log(std::make_shared<spdlog::logger>("steps",
                                             std::make_shared<spdlog::sinks::ostream_sink_mt>(out))) {
    log->set_level(level);
  }
  std::string text() {
    log->flush();
    return out.str();
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> log;
};

}  // namespace

TEST_SUITE("steps") {
  TEST_CASE("steps start after what they depend on and stop in exact reverse order") {
    Journal j;
    atask::Supervisor sv(options("order", 1));
    sv.add_step(j.step("c", {"b"}));
    sv.add_step(j.step("b", {"a", "pool"}));
    sv.add_step(j.step("a"));
    sv.add_step(j.step("d"));
    const Names boot{"loop", "aloops", "pool", "workers", "a", "b", "c", "d"};
    CHECK(sv.boot_order() == boot);
    sv.start();
    CHECK(sv.boot_order() == boot);
    CHECK(j.events() == Names{"start a", "start b", "start c", "start d"});
    CHECK(sv.stop().completed);
    CHECK(j.events() ==
          Names{"start a", "start b", "start c", "start d", "stop d", "stop c", "stop b", "stop a"});
  }

  TEST_CASE("the built-in steps come first in the boot order and info lists every step with its state") {
    Journal j;
    atask::Supervisor sv(options("builtin", 1));
    CHECK(sv.boot_order() == Names{"loop", "aloops", "pool", "workers"});
    sv.add_step(j.step("mine", {"workers"}));
    auto steps = sv.info().steps;
    REQUIRE(steps.size() == 5);
    CHECK(steps[2].name == "pool");
    CHECK(steps[2].builtin);
    CHECK(steps[2].depends_on == Names{"loop", "aloops"});
    CHECK(steps[4].name == "mine");
    CHECK_FALSE(steps[4].builtin);
    CHECK(std::all_of(steps.begin(), steps.end(),
                      [](auto& s) { return s.state == atask::StepState::created; }));
    sv.start();
    steps = sv.info().steps;
    CHECK(std::all_of(steps.begin(), steps.end(),
                      [](auto& s) { return s.state == atask::StepState::running; }));
    sv.stop();
    steps = sv.info().steps;
    CHECK(std::all_of(steps.begin(), steps.end(),
                      [](auto& s) { return s.state == atask::StepState::stopped; }));
  }

  TEST_CASE("a step that depends on the pool submits work when it starts and when a waiting stop stops it") {
    int at_start = 0, at_stop = 0;
    std::string stop_thread;
    bool running_at_stop = false;
    atask::Supervisor sv(options("work", 1));
    sv.add_step(
        {.name = "user",
         .depends_on = {"pool"},
         .start = [&](atask::Supervisor& s) { at_start = s.submit({}, [] { return 1; }).get_for(patience); },
         .stop =
             [&](atask::Supervisor& s) {
               stop_thread = thread_name();
               running_at_stop = s.is_running();
               at_stop = s.submit({}, [] { return 2; }).get_for(patience);
             }});
    sv.start();
    CHECK(at_start == 1);
    auto r = sv.stop();
    CHECK(r.completed);
    CHECK(r.stage == StopStage::warm);
    CHECK(running_at_stop);
    CHECK(at_stop == 2);
    CHECK(stop_thread == "work-stop");
  }

  TEST_CASE("a stop that cannot wait closes the supervisor to new work before the stop hooks run") {
    std::string submit_error;
    bool running_at_stop = true;
    atask::Supervisor sv(options("nowait", 1));
    sv.add_step({.name = "user", .depends_on = {"pool"}, .start = {}, .stop = [&](atask::Supervisor& s) {
                   running_at_stop = s.is_running();
                   submit_error = what_of<atask::LifecycleError>([&] { (void)s.submit({}, [] {}); });
                 }});
    sv.start();
    CHECK_FALSE(sv.stop({.wait = false}).completed);
    CHECK_FALSE(sv.is_running());
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK_FALSE(running_at_stop);
    CHECK(contains(submit_error, "Supervisor::submit()"));
    CHECK(contains(submit_error, "stopping"));
  }

  TEST_CASE("a step that depends on workers stops while its workers are still active") {
    bool active_at_stop = false;
    atask::Supervisor sv(options("wk", 1));
    std::unique_ptr<atask::EventWorker> ticker;  // after sv: gone before it
    sv.add_step({.name = "ticker",
                 .depends_on = {"workers"},
                 .start =
                     [&](atask::Supervisor& s) {
                       ticker = atask::event_worker(s, [] {}, {.name = "ticker"});
                       ticker->start();
                     },
                 .stop = [&](atask::Supervisor&) { active_at_stop = ticker->is_active(); }});
    sv.start();
    REQUIRE(ticker);
    CHECK(ticker->is_active());
    CHECK(sv.stop().completed);
    CHECK(active_at_stop);
    CHECK(ticker->is_stopped());  // the "workers" step stopped it after the user step
  }

  TEST_CASE("stop hooks run on the stopper thread when a signal stops the supervisor") {
    Event stopped;
    std::string stop_thread;
    atask::Supervisor sv({.id = "sig", .pool_size = 1, .handle_signals = true, .logger = quiet_logger()});
    sv.add_step({.name = "user", .depends_on = {}, .start = {}, .stop = [&](atask::Supervisor&) {
                   stop_thread = thread_name();
                   stopped.set();
                 }});
    sv.start();
    std::raise(SIGTERM);
    REQUIRE(stopped.wait_for());
    CHECK(block_within(sv).completed);
    CHECK(stop_thread == "sig-stop");
  }

  TEST_CASE("a dependency cycle makes start throw OptionsError naming the cycle before any step starts") {
    Journal j;
    atask::Supervisor sv(options("cycle", 1));
    sv.add_step(j.step("x", {"y"}));
    sv.add_step(j.step("y", {"z"}));
    sv.add_step(j.step("z", {"x", "pool"}));
    sv.add_step(j.step("self", {"self"}));
    auto msg = what_of<atask::OptionsError>([&] { sv.start(); });
    CAPTURE(msg);
    CHECK(contains(msg, "Supervisor::start() - step cycle: x -> y -> z -> x"));
    CHECK(j.events().empty());
    CHECK_FALSE(sv.is_running());
    CHECK(sv.info().state == atask::SupervisorState::created);
    CHECK(contains(what_of<atask::OptionsError>([&] { (void)sv.boot_order(); }),
                   "Supervisor::boot_order() - step cycle: x -> y -> z -> x"));
    auto r = sv.stop();
    CHECK(r.completed);
    CHECK(r.stage == StopStage::none);
    CHECK(j.events().empty());
  }

  TEST_CASE("a step that depends on itself is a cycle") {
    atask::Supervisor sv(options("self", 1));
    sv.add_step({.name = "self", .depends_on = {"self"}});
    CHECK_THROWS_WITH_AS(sv.start(), doctest::Contains("step cycle: self -> self"), atask::OptionsError);
  }

  TEST_CASE(
      "a missing dependency makes start throw OptionsError naming both steps, and start works once it "
      "exists") {
    Journal j;
    atask::Supervisor sv(options("missing", 1));
    sv.add_step(j.step("cache", {"pool", "redis"}));
    auto msg = what_of<atask::OptionsError>([&] { sv.start(); });
    CAPTURE(msg);
    CHECK(contains(msg, "Supervisor::start()"));
    CHECK(contains(msg, "'cache'"));
    CHECK(contains(msg, "'redis'"));
    CHECK(j.events().empty());
    CHECK(sv.info().state == atask::SupervisorState::created);
    sv.add_step(j.step("redis"));
    sv.start();
    CHECK(sv.is_running());
    CHECK(j.events() == Names{"start redis", "start cache"});
  }

  TEST_CASE("add_step throws OptionsError for an empty name or one already taken") {
    atask::Supervisor sv(options("names", 1));
    sv.add_step({.name = "mine"});
    CHECK_THROWS_WITH_AS(sv.add_step({.name = ""}), doctest::Contains("Supervisor::add_step()"),
                         atask::OptionsError);
    CHECK_THROWS_WITH_AS(sv.add_step({.name = "mine"}), doctest::Contains("'mine'"), atask::OptionsError);
    for (const char* builtin : {"loop", "aloops", "pool", "workers"}) {
      CAPTURE(builtin);
      auto msg = what_of<atask::OptionsError>([&] { sv.add_step({.name = builtin}); });
      CHECK(contains(msg, "Supervisor::add_step()"));
      CHECK(contains(msg, "built-in"));
    }
  }

  TEST_CASE("add_step after start throws LifecycleError") {
    StartedSupervisor sv(options("late", 1));
    CHECK_THROWS_WITH_AS(sv.add_step({.name = "late"}), doctest::Contains("Supervisor::add_step()"),
                         atask::LifecycleError);
    sv.stop();
    CHECK_THROWS_AS(sv.add_step({.name = "later"}), atask::LifecycleError);
  }

  TEST_CASE("a start hook that throws stops the steps already started in reverse and start throws Error") {
    Journal j;
    TextLog out(spdlog::level::err);
    atask::Supervisor sv({.id = "fail", .pool_size = 1, .logger = out.log});
    sv.add_step(j.step("a", {"pool"}));
    sv.add_step(j.step("b", {"a"}));
    sv.add_step({.name = "c",
                 .depends_on = {"b"},
                 .start = [](atask::Supervisor&) { throw std::runtime_error("no database"); },
                 .stop = [&](atask::Supervisor&) { j.add("stop c"); }});
    sv.add_step(j.step("d", {"c"}));
    auto msg = what_of<atask::Error>([&] { sv.start(); });
    CAPTURE(msg);
    CHECK(contains(msg, "Supervisor::start()"));
    CHECK(contains(msg, "'c'"));
    CHECK(contains(msg, "no database"));
    CHECK(j.events() == Names{"start a", "start b", "stop b", "stop a"});
    CHECK_FALSE(sv.is_running());
    CHECK(sv.info().state == atask::SupervisorState::stopped);
    auto steps = sv.info().steps;
    auto state_of = [&](std::string_view n) {
      return std::find_if(steps.begin(), steps.end(), [&](auto& s) { return s.name == n; })->state;
    };
    CHECK(state_of("pool") == atask::StepState::stopped);
    CHECK(state_of("c") == atask::StepState::failed);
    CHECK(state_of("d") == atask::StepState::created);
    CHECK(contains(out.text(), "step 'c' failed to start"));
    CHECK_THROWS_AS(sv.start(), atask::LifecycleError);
    CHECK_THROWS_AS((void)sv.submit({}, [] {}), atask::LifecycleError);
    CHECK(sv.stop().already_stopped);
  }

  TEST_CASE("a stop hook that throws is logged with the step name and the other steps still stop") {
    Journal j;
    TextLog out(spdlog::level::err);
    atask::Supervisor sv({.id = "throws", .pool_size = 1, .logger = out.log});
    sv.add_step(j.step("a"));
    sv.add_step({.name = "b", .depends_on = {"a"}, .start = {}, .stop = [](atask::Supervisor&) {
                   throw std::runtime_error("flush failed");
                 }});
    sv.add_step(j.step("c", {"b"}));
    sv.start();
    auto r = sv.stop();
    CHECK(r.completed);
    CHECK(j.events() == Names{"start a", "start c", "stop c", "stop a"});
    const auto text = out.text();
    CAPTURE(text);
    CHECK(contains(text, "step 'b'"));
    CHECK(contains(text, "flush failed"));
  }

  TEST_CASE("the boot order is logged at debug level") {
    Journal j;
    TextLog out(spdlog::level::debug);
    atask::Supervisor sv({.id = "logged", .pool_size = 1, .logger = out.log});
    sv.add_step(j.step("mine", {"pool"}));
    sv.start();
    sv.stop();
    const auto text = out.text();
    CAPTURE(text);
    CHECK(contains(text, "logged: boot order: loop -> aloops -> pool -> workers -> mine"));
  }

  TEST_CASE("a stop asked for by a start hook stops the supervisor once that hook returns") {
    Journal j;
    bool inner_completed = true;
    atask::Supervisor sv(options("early", 1));
    sv.add_step(j.step("a"));
    sv.add_step({.name = "quitter",
                 .depends_on = {"a"},
                 .start =
                     [&](atask::Supervisor& s) {
                       j.add("start quitter");
                       inner_completed = s.stop().completed;  // cannot wait for itself
                     },
                 .stop = [&](atask::Supervisor&) { j.add("stop quitter"); }});
    sv.add_step(j.step("never", {"quitter"}));
    sv.start();
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK_FALSE(inner_completed);
    CHECK(j.events() == Names{"start a", "start quitter", "stop quitter", "stop a"});
    CHECK(sv.info().state == atask::SupervisorState::stopped);
  }

  TEST_CASE("a stop hook runs once even when it calls stop itself and another thread stops too") {
    Journal j;
    bool inner_completed = true;
    Event in_hook, release;
    atask::Supervisor sv(options("once", 1));
    OpenOnExit guard{&release};
    sv.add_step({.name = "slow", .depends_on = {}, .start = {}, .stop = [&](atask::Supervisor& s) {
                   j.add("stop slow");
                   inner_completed = s.stop().completed;  // the stopper cannot wait for itself
                   in_hook.set();
                   release.wait_for();
                 }});
    sv.start();
    auto first = std::async(std::launch::async, [&] { return sv.stop(); });
    REQUIRE(in_hook.wait_for());
    auto second = std::async(std::launch::async, [&] { return sv.stop(); });
    CHECK_FALSE(sv.stop({.wait = false}).completed);
    release.set();
    CHECK(wait_or_abort(first, "the first Supervisor::stop()").completed);
    auto r2 = wait_or_abort(second, "the second Supervisor::stop()");
    CHECK(r2.completed);
    CHECK_FALSE(inner_completed);
    CHECK(j.events() == Names{"stop slow"});
  }

  TEST_CASE("a signal that arrives while starting stops the supervisor once the running start hook returns") {
    Journal j;
    auto lines = std::make_shared<LineWaiter>();
    auto log = std::make_shared<spdlog::logger>("steps", lines);
    log->set_level(spdlog::level::warn);
    bool seen = false;
    atask::Supervisor sv({.id = "sigboot", .pool_size = 1, .handle_signals = true, .logger = log});
    sv.add_step({.name = "signaller",
                 .depends_on = {},
                 .start =
                     [&](atask::Supervisor&) {
                       j.add("start signaller");
                       std::raise(SIGTERM);
                       seen = lines->wait_for("while starting");
                     },
                 .stop = [&](atask::Supervisor&) { j.add("stop signaller"); }});
    sv.add_step(j.step("later", {"signaller"}));
    sv.start();
    CHECK(seen);
    auto r = block_within(sv);
    CHECK(r.completed);
    CHECK(j.events() == Names{"start signaller", "stop signaller"});
  }

  TEST_CASE("destroying a running supervisor runs the stop hooks in reverse order") {
    Journal j;
    {
      atask::Supervisor sv(options("dtor", 1));
      sv.add_step(j.step("a"));
      sv.add_step(j.step("b", {"a"}));
      sv.start();
    }
    CHECK(j.events() == Names{"start a", "start b", "stop b", "stop a"});
  }
}
