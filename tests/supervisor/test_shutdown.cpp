// The stop stages on their own: a manual io_context that the test runs,
// tasks whose life the test drives, and the deadlines called where the
// timers would fire. No thread, no clock, no Supervisor.
#include "supervisor/stop_stages.hpp"

#include "supervisor/task_registry.hpp"

#include <doctest/doctest.h>

#include "support.hpp"

#include <boost/asio/post.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using atask::StopStage;
using atask::TaskStatus;
using atask::detail::Ref;
using atask::detail::StopStages;
using atask::detail::TaskRegistry;
using Stages = std::vector<StopStage>;

using namespace test;

namespace {

// A task whose life the test drives. A polite one ends (canceled) when asked
// to stop; a stubborn one ignores the request.
class FakeTask final : public atask::detail::TaskStateBase {
 public:
  FakeTask(std::uint64_t id, bool polite)
      : TaskStateBase(id, atask::Priority::normal, atask::TaskKind::thread, "task" + std::to_string(id)),
        polite_(polite) {}
  void run() override {}
  bool begin() { return try_start(); }
  void end() { finish_ok(); }
  void request_stop() noexcept override {
    TaskStateBase::request_stop();
    if (polite_) finish_canceled(std::make_exception_ptr(atask::TaskCanceled("stopped on request")));
  }

 private:
  bool polite_;
};

// A registry, the stages on a loop nobody runs but the test, and a record of
// what the stages told their listener (what Shutdown keeps under stop_m).
struct Rig final : StopStages::Listener {
  asio::io_context loop;
  Stages stages;
  std::size_t stop_requests = 0;
  std::vector<atask::TaskInfo> abandoned_tasks;
  int drains = 0;
  // As the supervisor wires it: the registry's "drained" is posted to the loop.
  TaskRegistry tasks{
      atask::SupervisorOptions{.id = "rig"},
      quiet_logger(),
      {.dequeue = {}, .drained = [this] { asio::post(loop, [this] { machine.tasks_drained(); }); }}};
  StopStages machine{loop, tasks, *this, quiet_logger(), "rig"};
  std::uint64_t next_id = 0;

  Rig() { tasks.open(); }
  ~Rig() {
    // Tasks a test left active end here, so that nothing leaks.
    for (auto& t : tasks.live_tasks([](auto&) { return true; }))
      t->abandon(std::make_exception_ptr(atask::TaskAbandoned("test over")));
  }

  Ref<FakeTask> queued(bool polite = false) {
    auto t = Ref<FakeTask>::adopt(new FakeTask(++next_id, polite));
    t->mark_queued();
    REQUIRE(tasks.add(t.get()));
    return t;
  }
  Ref<FakeTask> running(bool polite = false) {
    auto t = queued(polite);
    REQUIRE(t->begin());
    return t;
  }
  // What Shutdown::close() does before the warm stage begins.
  void close() { tasks.close(); }
  // Runs what is ready on the loop (expired timers included), without waiting.
  void settle() {
    while (loop.poll() > 0) {
    }
    loop.restart();
  }

  void stage_entered(StopStage s) override { stages.push_back(s); }
  void stop_requested(std::size_t n) override { stop_requests += n; }
  void abandoned(std::vector<atask::TaskInfo> ts) override { abandoned_tasks = std::move(ts); }
  void drained() override { ++drains; }
};

const auto far = std::chrono::steady_clock::now() + 1h;

}  // namespace

TEST_SUITE("shutdown") {
  TEST_CASE("with no task left the shutdown drains in the warm stage at once") {
    Rig r;
    r.close();
    r.machine.begin(far, 1h);
    CHECK(r.stages == Stages{StopStage::warm});
    CHECK(r.drains == 1);
    CHECK(r.machine.drained());
    CHECK_FALSE(r.machine.armed());  // no timer left behind
  }

  TEST_CASE("the stages run warm then soft then cold as their deadlines pass") {
    Rig r;
    auto t = r.running();
    r.close();
    r.machine.begin(far, 30min);
    CHECK(r.stages == Stages{StopStage::warm});
    REQUIRE(r.machine.armed());
    CHECK(*r.machine.armed() == far);  // the warm stage ends at the deadline the stop fixed

    const auto before_soft = std::chrono::steady_clock::now();
    r.machine.warm_deadline_reached();
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft});
    CHECK(r.stop_requests == 1);
    CHECK(t->stop_token().stop_requested());
    CHECK(t->status() == TaskStatus::started);  // it ignores the request
    REQUIRE(r.machine.armed());
    CHECK(*r.machine.armed() >= before_soft + 30min);  // soft_timeout counts from the soft stage

    r.machine.soft_deadline_reached();
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft, StopStage::cold});
    REQUIRE(r.abandoned_tasks.size() == 1);
    CHECK(r.abandoned_tasks[0].id == t->id());
    CHECK(r.abandoned_tasks[0].status == TaskStatus::started);
    CHECK(t->status() == TaskStatus::failed);
    CHECK_THROWS_AS(t->rethrow_if_error(), atask::TaskAbandoned);
    CHECK(r.drains == 1);
    CHECK(r.tasks.empty());
    CHECK_FALSE(r.machine.armed());
  }

  TEST_CASE("the stage timers move the stages on the loop when their deadlines have passed") {
    Rig r;
    auto t = r.running();
    r.close();
    // Deadlines already past: the timers are due the moment they are armed.
    r.machine.begin(std::chrono::steady_clock::now(), 0ms);
    CHECK(r.stages == Stages{StopStage::warm});
    r.settle();
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft, StopStage::cold});
    CHECK(r.abandoned_tasks.size() == 1);
    CHECK(r.drains == 1);
  }

  TEST_CASE("tasks that end in the warm stage end the shutdown there and later deadlines change nothing") {
    Rig r;
    auto a = r.running();
    auto b = r.queued();
    r.close();
    r.machine.begin(far, 1h);
    a->end();
    CHECK(r.drains == 0);  // b is still queued
    REQUIRE(b->begin());
    b->end();
    r.settle();  // the registry's "drained" reaches the stages on the loop
    CHECK(r.drains == 1);
    CHECK_FALSE(r.machine.armed());  // the warm timer was canceled
    r.machine.warm_deadline_reached();
    r.machine.soft_deadline_reached();
    CHECK(r.stages == Stages{StopStage::warm});
    CHECK(r.stop_requests == 0);
    CHECK(r.abandoned_tasks.empty());
    CHECK(r.drains == 1);
  }

  TEST_CASE("tasks that honour the soft stage's stop request end the shutdown before the cold stage") {
    Rig r;
    auto a = r.running(true);
    auto b = r.running(true);
    r.close();
    r.machine.begin(far, 1h);
    r.machine.warm_deadline_reached();
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft});
    CHECK(r.stop_requests == 2);
    CHECK(a->status() == TaskStatus::canceled);
    CHECK(b->status() == TaskStatus::canceled);
    CHECK(r.drains == 1);
    CHECK_FALSE(r.machine.armed());
    r.machine.soft_deadline_reached();
    r.settle();
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft});
    CHECK(r.abandoned_tasks.empty());
    CHECK(r.drains == 1);
  }

  TEST_CASE("the soft stage cancels tasks still queued and asks only running ones to stop") {
    Rig r;
    auto run = r.running();
    auto wait = r.queued();
    r.close();
    r.machine.begin(far, 1h);
    CHECK(wait->status() == TaskStatus::queued);  // warm: queued tasks may still run
    r.machine.warm_deadline_reached();
    CHECK(wait->status() == TaskStatus::canceled);
    CHECK_THROWS_WITH_AS(wait->rethrow_if_error(), doctest::Contains("reached the soft shutdown stage"),
                         atask::TaskCanceled);
    CHECK(r.stop_requests == 1);
    CHECK(run->stop_token().stop_requested());
    CHECK(r.tasks.shutdown_canceled() == 1);
    CHECK(r.drains == 0);
  }

  TEST_CASE("a signal moves the warm stage to soft at once and a second one to cold") {
    Rig r;
    auto t = r.running();
    r.close();
    r.machine.begin(far, 1h);
    r.machine.advance();
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft});
    CHECK(r.stop_requests == 1);
    r.machine.advance();
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft, StopStage::cold});
    CHECK(r.abandoned_tasks.size() == 1);
    CHECK(r.drains == 1);
    r.machine.advance();  // a third signal after the end changes nothing
    CHECK(r.stages.size() == 3);
    CHECK(r.drains == 1);
  }

  TEST_CASE("a signal that comes before the warm stage begins skips the warm stage when it does") {
    Rig r;
    auto t = r.running();
    r.close();
    r.machine.advance();
    CHECK(r.stages.empty());
    r.machine.begin(far, 1h);
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft});
    CHECK(r.stop_requests == 1);
    REQUIRE(r.machine.armed());
    CHECK(*r.machine.armed() != far);  // the soft stage's timer, not the warm one
  }

  TEST_CASE("two signals before the warm stage begins skip to the cold stage") {
    Rig r;
    auto t = r.running();
    r.close();
    r.machine.advance();
    r.machine.advance();
    r.machine.begin(far, 1h);
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft, StopStage::cold});
    CHECK(r.abandoned_tasks.size() == 1);
    CHECK(r.drains == 1);
  }

  TEST_CASE("tasks that end before the warm stage begins are found empty when it does") {
    Rig r;
    auto t = r.running();
    r.close();
    t->end();
    r.settle();  // the registry's "drained" arrives before the stages began: nothing yet
    CHECK(r.drains == 0);
    CHECK(r.stages.empty());
    r.machine.begin(far, 1h);
    CHECK(r.stages == Stages{StopStage::warm});
    CHECK(r.drains == 1);
  }

  TEST_CASE("a stage without a deadline arms no timer") {
    Rig r;
    auto t = r.running();
    r.close();
    // warm_timeout and soft_timeout "forever"
    r.machine.begin(std::nullopt, std::chrono::milliseconds::max());
    CHECK_FALSE(r.machine.armed());
    r.machine.advance();
    CHECK(r.stages == Stages{StopStage::warm, StopStage::soft});
    CHECK_FALSE(r.machine.armed());
  }

  TEST_CASE("released stages cancel their timer and a deadline that still comes changes nothing") {
    Rig r;
    auto t = r.running();
    r.close();
    r.machine.begin(std::chrono::steady_clock::now(), 1h);
    r.machine.release();  // the loop ends
    CHECK_FALSE(r.machine.armed());
    r.settle();
    CHECK(r.stages == Stages{StopStage::warm});
  }

  TEST_CASE("every stop stage has a name") {
    CHECK(atask::to_string(StopStage::none) == "none");
    CHECK(atask::to_string(StopStage::warm) == "warm");
    CHECK(atask::to_string(StopStage::soft) == "soft");
    CHECK(atask::to_string(StopStage::cold) == "cold");
  }
}
