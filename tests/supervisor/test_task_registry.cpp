// The supervisor's task books on their own: tasks whose life the test
// drives, no Supervisor, no thread.
#include "supervisor/task_registry.hpp"

#include <doctest/doctest.h>

#include "support.hpp"

#include <stdexcept>
#include <string>

using atask::Priority;
using atask::TaskStatus;
using atask::detail::Ref;
using atask::detail::TaskRegistry;

using namespace test;

namespace {

class FakeTask final : public atask::detail::TaskStateBase {
 public:
  FakeTask(std::uint64_t id, Priority p)
      : TaskStateBase(id, p, atask::TaskKind::thread, "task" + std::to_string(id)) {}
  void run() override {}
  bool begin() { return try_start(); }
  void end() { finish_ok(); }
  void fail() { finish_error(std::make_exception_ptr(std::runtime_error("no"))); }
};

struct Books {
  int drains = 0;
  int dequeued = 0;
  TaskRegistry tasks;
  std::uint64_t next_id = 0;

  explicit Books(std::size_t history_size = 1000)
      : tasks(atask::SupervisorOptions{.id = "books", .history_size = history_size}, quiet_logger(),
              {.dequeue = [this](atask::detail::TaskStateBase&) { ++dequeued; },
               .drained = [this] { ++drains; }}) {}
  ~Books() {
    for (auto& t : tasks.live_tasks([](auto&) { return true; }))
      t->abandon(std::make_exception_ptr(atask::TaskAbandoned("test over")));
  }

  Ref<FakeTask> make(Priority p = Priority::normal) {
    auto t = Ref<FakeTask>::adopt(new FakeTask(++next_id, p));
    t->mark_queued();
    return t;
  }
  Ref<FakeTask> add(Priority p = Priority::normal) {
    auto t = make(p);
    REQUIRE(tasks.add(t.get()));
    return t;
  }
};

}  // namespace

TEST_SUITE("task registry") {
  TEST_CASE("a registry takes tasks only between open and close") {
    Books b;
    auto early = b.make();
    CHECK_FALSE(b.tasks.add(early.get()));
    b.tasks.open();
    auto t = b.add();
    CHECK_FALSE(b.tasks.empty());
    b.tasks.close();
    auto late = b.make();
    CHECK_FALSE(b.tasks.add(late.get()));
    atask::TaskCounters c;
    std::size_t active = 0;
    b.tasks.fill(c, active);
    CHECK(active == 1);
    CHECK(c.submitted[atask::index(Priority::normal)] == 1);  // refused tasks are not counted
  }

  TEST_CASE("the history keeps the last history_size finished tasks and the counters count them all") {
    Books b(3);
    b.tasks.open();
    for (int i = 0; i < 5; ++i) {
      auto t = b.add(Priority::high);
      REQUIRE(t->begin());
      if (i == 4)
        t->fail();
      else
        t->end();
    }
    auto ts = b.tasks.list(std::nullopt);
    REQUIRE(ts.size() == 3);
    CHECK(ts[0].id == 3);  // oldest first
    CHECK(ts[2].id == 5);
    CHECK(ts[2].status == TaskStatus::failed);
    CHECK(b.tasks.list(TaskStatus::completed).size() == 2);
    atask::TaskCounters c;
    std::size_t active = 9;
    b.tasks.fill(c, active);
    CHECK(active == 0);
    const auto h = atask::index(Priority::high);
    CHECK(c.submitted[h] == 5);
    CHECK(c.completed[h] == 4);
    CHECK(c.failed[h] == 1);
    auto m = b.tasks.metrics();
    CHECK(m.started[h][atask::index(atask::TaskKind::thread)] == 5);
    CHECK(m.run_time[h][atask::index(atask::TaskKind::thread)].count == 5);
  }

  TEST_CASE("active tasks are listed before the history") {
    Books b;
    b.tasks.open();
    auto done = b.add();
    REQUIRE(done->begin());
    done->end();
    auto live = b.add();
    auto ts = b.tasks.list(std::nullopt);
    REQUIRE(ts.size() == 2);
    CHECK(ts[0].id == live->id());
    CHECK(ts[0].status == TaskStatus::queued);
    CHECK(ts[1].id == done->id());
  }

  TEST_CASE(
      "cancel_pending cancels delayed tasks and queued ones when asked and names the supervisor in the "
      "error") {
    Books b;
    b.tasks.open();
    auto queued = b.add();
    auto delayed = b.make();
    delayed->mark_delayed();
    REQUIRE(b.tasks.add(delayed.get()));
    auto running = b.add();
    REQUIRE(running->begin());
    CHECK(b.tasks.cancel_pending(false, "is stopping") == 1);
    CHECK(delayed->status() == TaskStatus::canceled);
    CHECK_THROWS_WITH_AS(delayed->rethrow_if_error(), doctest::Contains("supervisor 'books' is stopping"),
                         atask::TaskCanceled);
    CHECK(queued->status() == TaskStatus::queued);
    CHECK(b.tasks.cancel_pending(true, "is stopping") == 1);
    CHECK(queued->status() == TaskStatus::canceled);
    CHECK(running->status() == TaskStatus::started);
    CHECK(b.dequeued == 2);  // each was taken out of where it waited
  }

  TEST_CASE(
      "tasks canceled before they started count as shutdown-canceled only once the registry is closed") {
    Books b;
    b.tasks.open();
    auto before = b.add();
    auto after = b.add();
    CHECK(before->cancel());
    b.tasks.close();
    CHECK(after->cancel());
    CHECK(b.tasks.shutdown_canceled() == 1);
  }

  TEST_CASE("the drained hook runs once the last task of a closed registry ends and not before the close") {
    Books b;
    b.tasks.open();
    auto a = b.add();
    REQUIRE(a->begin());
    a->end();
    CHECK(b.drains == 0);  // open: an empty registry is not a drained one
    auto c = b.add();
    auto d = b.add();
    b.tasks.close();
    REQUIRE(c->begin());
    c->end();
    CHECK(b.drains == 0);
    REQUIRE(d->begin());
    d->end();
    CHECK(b.drains == 1);
    CHECK(b.tasks.empty());
  }
}
