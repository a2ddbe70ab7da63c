// The distributed mode in one process: a Client and Consumers against a
// redis-server the test starts. Killed workers (other processes) are in
// test_distributed_kill.cpp.
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/tasks/registry.hpp>

#include "distributed/keys.hpp"
#include "distributed/redis/connection.hpp"

#include <doctest/doctest.h>

#include "distributed_fixtures.hpp"
#include "fixtures.hpp"
#include "log_capture.hpp"
#include "redis_calls.hpp"
#include "redis_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <latch>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace dist = atask::distributed;
using atask::redis::cmd;
using atask::redis::Connection;
using atask::redis::Reply;
using namespace std::chrono_literals;
using namespace test;

namespace {

// A process task that reports progress from its child, then waits until the
// test has seen the report: it blocks opening the FIFO `gate` for reading
// until the test opens it for writing.
int report_from_child(std::string gate) {
  const bool sent = dist::report_progress(0.25, "in a child");
  const int fd = ::open(gate.c_str(), O_RDONLY);
  if (fd >= 0) {
    char c = 0;
    (void)::read(fd, &c, 1);
    ::close(fd);
  }
  return sent ? 5 : -1;
}

// A process task run locally, not by a consumer: its report goes to the
// parent, which has no one to give it to, and the task goes on.
bool report_unheard() {
  return dist::report_progress(0.5, "nobody listens");
}

atask::SupervisorOptions quiet_options(std::string id, int pool = 2) {
  auto o = options(std::move(id), pool);
  // ATASK_TEST_LOG=1 shows the supervisors' and consumers' logs.
  if (std::getenv("ATASK_TEST_LOG")) {
    o.logger = spdlog::default_logger();
    o.logger->set_level(spdlog::level::debug);
  }
  return o;
}

}  // namespace

TEST_SUITE("distributed") {
  TEST_CASE("task ids are 32 hex digits and do not repeat in 100,000 draws") {
    std::set<std::string> seen;
    for (int i = 0; i < 100'000; ++i) {
      std::string id = dist::detail::random_id();
      REQUIRE(id.size() == 32);
      REQUIRE(id.find_first_not_of("0123456789abcdef") == std::string::npos);
      seen.insert(std::move(id));
    }
    CHECK(seen.size() == 100'000);
  }

  TEST_CASE("a task sent by a client runs on a consumer, and the handle has its result, attempt and worker") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("add", [](int a, int b) { return a + b; });
    tasks.add("greet", [](std::string who) -> asio::awaitable<std::string> { co_return "hello " + who; });
    atask::Supervisor sv(quiet_options("d1"));
    dist::Consumer worker(sv, tasks, fast(redis, "w1"));
    sv.start();

    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("add", {2, 3});
    CHECK(h.get_for(patience) == 5);
    CHECK(h.id().size() == 32);
    const auto info = h.info();
    CHECK(info.status == dist::RemoteStatus::succeeded);
    CHECK(info.attempt == 1);
    CHECK(info.worker == "w1");
    CHECK(info.name == "add");
    CHECK(info.queue == "default");
    CHECK(info.finished_ms >= info.started_ms);
    CHECK(client.send<std::string>("greet", {"ada"}).get_for(patience) == "hello ada");
    // From a coroutine, without blocking a thread.
    asio::io_context ctx;
    auto h42 = client.send<int>("add", {20, 22});
    auto fut = asio::co_spawn(
        ctx, [&]() -> asio::awaitable<int> { co_return co_await h42.async_get(asio::use_awaitable); },
        asio::use_future);
    ctx.run_for(patience);
    REQUIRE(fut.wait_for(0s) == std::future_status::ready);
    CHECK(fut.get() == 42);

    // Another client finds it by id.
    dist::Client other({.broker = redis.url()});
    CHECK(other.handle<int>(h.id()).get_for(patience) == 5);
    CHECK(eventually([&] { return worker.info().succeeded == 3; }));
  }

  TEST_CASE("sends from eight threads at once each arrive once, with their own results") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::mutex m;
    std::map<int, int> runs;  // argument -> runs
    tasks.add("note", [&](int x) {
      std::lock_guard lk(m);
      ++runs[x];
      return x;
    });
    atask::Supervisor sv(quiet_options("d1t"));
    dist::Consumer worker(sv, tasks, fast(redis, "w1t"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    CHECK(client.send<int>("note", {-1}).get_for(patience) == -1);
    constexpr int threads = 8, each = 100;
    std::latch go(threads);
    std::vector<std::future<int>> wrong;
    for (int t = 0; t < threads; ++t)
      wrong.push_back(std::async(std::launch::async, [&, t] {
        go.arrive_and_wait();
        std::vector<dist::RemoteHandle<int>> hs;
        for (int i = 0; i < each; ++i) hs.push_back(client.send<int>("note", {t * each + i}));
        int bad = 0;
        for (int i = 0; i < each; ++i) bad += hs[i].get_for(patience) != t * each + i;
        return bad;
      }));
    for (auto& w : wrong) CHECK(w.get() == 0);
    std::lock_guard lk(m);
    CHECK(runs.size() == threads * each + 1);
    CHECK(std::all_of(runs.begin(), runs.end(), [](auto& kv) { return kv.second == 1; }));
  }

  TEST_CASE("a worker waiting idle is handed its task already started - no atask_start round trip") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("add", [](int a, int b) { return a + b; });
    atask::Supervisor sv(quiet_options("hand1"));
    dist::Consumer worker(sv, tasks, fast(redis, "w1"));
    sv.start();
    const std::string idle = dist::detail::idle_key("default"), inbox = dist::detail::inbox_key("w1");
    REQUIRE(eventually([&] { return !redis_call(redis, cmd("ZSCORE", idle, "w1")).is_nil(); }));

    dist::Client client({.broker = redis.url()});
    for (int i = 0; i < 5; ++i) {
      auto h = client.send<int>("add", {i, 1});
      CHECK(h.get_for(patience) == i + 1);
      const auto info = h.info();
      CHECK(info.attempt == 1);
      CHECK(info.worker == "w1");
      CHECK(h.attempts().empty());
    }
    // The worker waited between tasks: they came through its inbox. (It
    // says it waits again at once after each, so all five did, unless a
    // sanitizer slowed it past its lapse.)
    CHECK(worker.info().handed >= 1);
    CHECK(worker.info().received == 5);
    // The worker counts a success when atask_complete answers, which can be
    // after the client saw the result.
    CHECK(eventually([&] { return worker.info().succeeded == 5; }));
    // The inbox entries it took are acknowledged and gone with its next read.
    CHECK(eventually([&] { return redis_call(redis, cmd("XLEN", inbox)).integer == 0; }));
    CHECK(redis_call(redis, cmd("XPENDING", inbox, "w")).elements.at(0).integer == 0);
    sv.stop();
    // Left: it waits nowhere, and its inbox is gone.
    CHECK(redis_call(redis, cmd("ZSCORE", idle, "w1")).is_nil());
    CHECK(redis_call(redis, cmd("EXISTS", inbox)).integer == 0);
  }

  TEST_CASE("a task handed to a worker that never read it goes back unstarted - not a lost delivery") {
    // "ghost" says it waits idle, then never reads its inbox: it leaves (or
    // is reaped as dead) with a task handed to it.
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("add", [](int a, int b) { return a + b; });
    const std::string q = "default";
    std::vector<Connection::Command> setup{
        cmd("FUNCTION", "LOAD", "REPLACE", std::string(dist::detail::functions_source()))};
    std::string streams;
    for (auto p : atask::all_priorities) {
      const std::string s = dist::detail::stream_key(q, p);
      setup.push_back(cmd("XGROUP", "CREATE", s, "w", "0", "MKSTREAM"));
      streams += (streams.empty() ? "" : " ") + s;
    }
    setup.push_back(cmd("XGROUP", "CREATE", dist::detail::inbox_key("ghost"), "w", "0", "MKSTREAM"));
    setup.push_back(cmd("FCALL", "atask_register", "2", "atask:workers", dist::detail::worker_key("ghost"),
                        "ghost", "queues", q, "streams", streams));
    Connection::Command idle = cmd("FCALL", "atask_idle", "4");
    for (auto p :
         {atask::Priority::critical, atask::Priority::high, atask::Priority::normal, atask::Priority::low})
      idle.push_back(dist::detail::stream_key(q, p));
    for (auto a : {"ghost", "1", "600000", "1"}) idle.push_back(a);
    idle.push_back(q);
    setup.push_back(idle);
    for (auto& r : redis_calls(redis, setup)) REQUIRE_MESSAGE(!r.is_error(), r.describe());

    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("add", {1, 2});
    CHECK(redis_call(redis, cmd("XLEN", dist::detail::inbox_key("ghost"))).integer == 1);
    auto info = h.info();
    CHECK(info.status == dist::RemoteStatus::started);
    CHECK(info.worker == "ghost");
    CHECK(info.attempt == 1);

    SUBCASE("the worker leaves") {
      CHECK(redis_call(redis, cmd("FCALL", "atask_unregister", "2", "atask:workers",
                                  dist::detail::worker_key("ghost"), "ghost"))
                .integer == 1);
      info = h.info();
      CHECK(info.status == dist::RemoteStatus::queued);
      CHECK(info.attempt == 0);
    }
    SUBCASE("the worker is reaped") {
      (void)redis_call(redis, cmd("ZADD", "atask:workers", "1", "ghost"));  // silent since 1970
    }
    SUBCASE("the worker stops fetching (atask_unidle) - what it runs stays") {
      CHECK(redis_call(redis, cmd("FCALL", "atask_unidle", "0", "ghost", "some-other-task")).integer == 1);
      info = h.info();
      CHECK(info.status == dist::RemoteStatus::queued);
      CHECK(info.attempt == 0);
      CHECK(redis_call(redis, cmd("XLEN", dist::detail::inbox_key("ghost"))).integer == 0);
      CHECK(redis_call(redis, cmd("ZSCORE", dist::detail::idle_key(q), "ghost")).is_nil());
    }
    SUBCASE("the worker read it and does not run it (atask_unstart)") {
      const auto read = redis_call(
          redis, cmd("XREADGROUP", "GROUP", "w", "ghost", "STREAMS", dist::detail::inbox_key("ghost"), ">"));
      std::map<std::string, std::string> f;
      const auto& fields = read.elements.at(0).elements.at(1).elements.at(0).elements.at(1).elements;
      for (std::size_t i = 0; i + 1 < fields.size(); i += 2) f[fields[i].str] = fields[i + 1].str;
      CHECK(redis_call(redis, cmd("FCALL", "atask_unstart", "2", "atask:t:" + h.id(), f["s"], "ghost", "2",
                                  f["e"]))
                .integer == 0);  // not its attempt: nothing changes
      CHECK(redis_call(redis,
                       cmd("FCALL", "atask_unstart", "2", "atask:t:" + h.id(), f["s"], "ghost", "1", f["e"]))
                .integer == 1);
      info = h.info();
      CHECK(info.status == dist::RemoteStatus::queued);
      CHECK(info.attempt == 0);
      // Its old entry is gone from the ghost's pending list; the new one waits.
      CHECK(redis_call(redis, cmd("XPENDING", f["s"], "w")).elements.at(0).integer == 0);
      CHECK(redis_call(redis, cmd("XLEN", f["s"])).integer == 1);
    }
    atask::Supervisor sv(quiet_options("hand2"));
    dist::Consumer worker(sv, tasks, fast(redis, "w1"));
    sv.start();
    CHECK(h.get_for(patience) == 3);
    info = h.info();
    CHECK(info.attempt == 1);
    CHECK(info.worker == "w1");
    CHECK(h.attempts().empty());  // no atask::WorkerLost: the ghost never had it
    // Gone when it leaves, or when w1 reaps it (it sends no heartbeat).
    CHECK(eventually(
        [&] { return redis_call(redis, cmd("EXISTS", dist::detail::inbox_key("ghost"))).integer == 0; }));
    CHECK(redis_call(redis, cmd("ZSCORE", dist::detail::idle_key(q), "ghost")).is_nil());
  }

  TEST_CASE("a worker reaped while alive (paused past dead_after) registers again and goes on fetching") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("add", [](int a, int b) { return a + b; });
    atask::Supervisor sv(quiet_options("hand4"));
    dist::Consumer worker(sv, tasks, fast(redis, "w1"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    CHECK(client.send<int>("add", {1, 1}).get_for(patience) == 2);
    REQUIRE(eventually(
        [&] { return !redis_call(redis, cmd("ZSCORE", dist::detail::idle_key("default"), "w1")).is_nil(); }));
    // What a sweep does to a worker silent for dead_after: its inbox and
    // its group go, it waits nowhere. Checked in the same transaction: the
    // worker's next heartbeat (every 100 ms) brings the inbox back.
    std::vector<atask::redis::Connection::Command> sweep;
    sweep.push_back(cmd("MULTI"));
    sweep.push_back(cmd("FCALL", "atask_reap", "2", "atask:workers", "atask:reaper", "0", "100", "test"));
    sweep.push_back(cmd("EXISTS", dist::detail::inbox_key("w1")));
    sweep.push_back(cmd("EXEC"));
    const auto swept = redis_calls(redis, std::move(sweep));
    REQUIRE(swept.size() == 4);
    REQUIRE(swept[3].elements.size() == 2);
    const auto& reaped = swept[3].elements[0];
    REQUIRE(reaped.elements.size() == 2);
    CHECK(reaped.elements[0].str == "w1");
    CHECK(swept[3].elements[1].integer == 0);
    // Its next heartbeat registers it again, inbox included; tasks flow.
    for (int i = 0; i < 5; ++i) CHECK(client.send<int>("add", {i, 2}).get_for(patience) == i + 2);
    CHECK(eventually(
        [&] { return redis_call(redis, cmd("EXISTS", dist::detail::inbox_key("w1"))).integer == 1; }));
    CHECK(eventually([&] { return worker.info().handed >= 1 + 1; }));  // one before the sweep, one after
    auto last = client.send<int>("add", {40, 2});
    CHECK(last.get_for(patience) == 42);
  }

  TEST_CASE(
      "a step of Redis's clock past dead_after presumes no live worker dead - the running task runs once") {
    // Redis's clock is its machine's wall clock: a step forward (an NTP
    // step, a virtual machine paused and set right; CI saw 8.9 s) makes
    // every heartbeat look that much older at once. To Redis's data that is
    // the same as every heartbeat score moving back by the step, which is
    // what the test does, in one call. A ghost, a worker that sends no
    // heartbeat, is moved back with them: it is still found dead.
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::atomic<int> runs{0};
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
    tasks.add("held", [&] {
      const int n = ++runs;
      std::unique_lock lk(m);
      cv.wait_for(lk, patience, [&] { return open; });
      return n;
    });
    atask::Supervisor sv1(quiet_options("step1")), sv2(quiet_options("step2"));
    dist::Consumer w1(sv1, tasks, fast(redis, "w1")), w2(sv2, tasks, fast(redis, "w2"));
    sv1.start();
    sv2.start();
    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("held", {});
    REQUIRE(eventually([&] { return runs.load() == 1; }));
    // Both have sent a heartbeat since they joined (it sets `running`): their
    // next one says how long their own clock ran since.
    REQUIRE(eventually([&] {
      return redis_call(redis, cmd("HEXISTS", dist::detail::worker_key("w1"), "running")).integer == 1 &&
             redis_call(redis, cmd("HEXISTS", dist::detail::worker_key("w2"), "running")).integer == 1;
    }));
    const auto step =
        redis_call(redis, cmd("EVAL",
                              "local now = redis.call('TIME')[1] * 1000 "
                              "redis.call('ZADD', KEYS[1], now, 'ghost') "
                              "redis.call('HSET', 'atask:w:ghost', 'streams', '') "
                              "local z = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES') "
                              "for i = 1, #z, 2 do redis.call('ZADD', KEYS[1], z[i + 1] - 10000, z[i]) end "
                              "return #z / 2",
                              "1", "atask:workers"));
    REQUIRE(step.integer == 3);
    // The ghost is swept once the hold (dead_after, 1 s) is over; by then
    // both live workers have sent heartbeats by the new clock.
    CHECK(eventually([&] { return redis_call(redis, cmd("ZSCORE", "atask:workers", "ghost")).is_nil(); }));
    // Each live worker saw the step at its next heartbeat.
    CHECK(w1.info().clock_steps >= 1);
    CHECK(w2.info().clock_steps >= 1);
    {
      std::lock_guard lk(m);
      open = true;
    }
    cv.notify_all();
    CHECK(h.get_for(patience) == 1);
    CHECK(runs.load() == 1);
    CHECK(h.info().attempt == 1);
    CHECK(h.attempts().empty());  // no atask::WorkerLost
    CHECK(w1.info().reaped + w2.info().reaped == 0);
    CHECK(!redis_call(redis, cmd("ZSCORE", "atask:workers", "w1")).is_nil());
    CHECK(!redis_call(redis, cmd("ZSCORE", "atask:workers", "w2")).is_nil());
  }

  TEST_CASE("a task canceled while it waits in a busy worker's inbox never runs") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::promise<void> blocking;
    std::latch release(1);
    std::atomic<int> ran{0};
    tasks.add("block", [&] {
      blocking.set_value();
      release.wait();
    });
    tasks.add("count", [&] { ++ran; });
    atask::Supervisor sv(quiet_options("hand5", 1));
    auto o = fast(redis, "w1");
    o.prefetch = 1;
    dist::Consumer worker(sv, tasks, o);
    sv.start();
    dist::Client client({.broker = redis.url()});
    auto b = client.send("block", {});
    REQUIRE(blocking.get_future().wait_for(patience) == std::future_status::ready);
    // The worker's one slot is taken, so it waits on no queue; say it does
    // (what a wait not yet lapsed looks like): the next task is handed to it.
    (void)redis_call(redis, cmd("ZADD", dist::detail::idle_key("default"), "99999999999999", "w1"));
    auto c = client.send("count", {});
    REQUIRE(c.status() == dist::RemoteStatus::started);  // handed: started in its inbox
    CHECK(c.info().worker == "w1");
    CHECK(c.cancel());  // its worker hears it before the task is there
    release.count_down();
    CHECK(b.wait_for(patience));
    CHECK_THROWS_AS((void)c.get_for(patience), atask::TaskCanceled);
    CHECK(ran == 0);
    CHECK(client.send("count", {}).wait_for(patience));
    CHECK(ran == 1);
  }

  TEST_CASE("a worker whose wait has lapsed is handed nothing - the task waits in its stream") {
    RedisServer redis;
    const std::string q = "default", s = dist::detail::stream_key(q, atask::Priority::normal);
    std::vector<Connection::Command> setup{
        cmd("FUNCTION", "LOAD", "REPLACE", std::string(dist::detail::functions_source())),
        cmd("XGROUP", "CREATE", s, "w", "0", "MKSTREAM"),
        cmd("XGROUP", "CREATE", dist::detail::inbox_key("ghost"), "w", "0", "MKSTREAM"),
        cmd("FCALL", "atask_register", "2", "atask:workers", dist::detail::worker_key("ghost"), "ghost",
            "queues", q, "streams", s),
        // Waits for 1 ms only.
        cmd("FCALL", "atask_idle", "1", s, "ghost", "1", "1", "1", q)};
    for (auto& r : redis_calls(redis, setup)) REQUIRE_MESSAGE(!r.is_error(), r.describe());
    const auto lapse = std::stoll(redis_call(redis, cmd("ZSCORE", dist::detail::idle_key(q), "ghost")).str);
    REQUIRE(eventually([&] { return redis_now_ms(redis) > lapse; }));
    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("add", {1, 2});
    CHECK(h.info().status == dist::RemoteStatus::queued);
    CHECK(redis_call(redis, cmd("XLEN", dist::detail::inbox_key("ghost"))).integer == 0);
    CHECK(redis_call(redis, cmd("XLEN", s)).integer == 1);
    CHECK(redis_call(redis, cmd("EXISTS", dist::detail::idle_key(q))).integer ==
          0);  // the lapsed wait is gone
  }

  TEST_CASE("a nearly full worker reads for its one free slot - a task does not wait while a slot is free") {
    // prefetch 8: the worker reads again once 2 slots are free, or
    // refill_wait after one freed. With 7 tasks held, the one free slot must
    // still take new tasks; when reads waited for a quarter of the slots,
    // these stayed in their stream until a held task ended.
    RedisServer redis;
    atask::TaskRegistry tasks;
    test::Counter holding;
    test::Event release;
    tasks.add("hold", [&] {
      holding.bump();
      release.wait_for(std::chrono::minutes(2));
      return 0;
    });
    tasks.add("add", [](int a, int b) { return a + b; });
    atask::Supervisor sv(quiet_options("refill", 8));
    auto o = fast(redis, "w-refill");
    o.prefetch = 8;
    dist::Consumer worker(sv, tasks, o);
    test::OpenOnExit open_release{&release};
    sv.start();
    dist::Client client({.broker = redis.url()});
    std::vector<dist::RemoteHandle<int>> held;
    for (int i = 0; i < 7; ++i) held.push_back(client.send<int>("hold", {}));
    REQUIRE(holding.wait_for_at_least(7));
    // One by one through the free slot, each read after the one before ended.
    for (int i = 0; i < 3; ++i) CHECK(client.send<int>("add", {i, 1}).get_for(patience) == i + 1);
    CHECK(holding.value() == 7);
    release.set();
    for (auto& h : held) CHECK(h.get_for(patience) == 0);
  }

  TEST_CASE("a failing task gives its error type and message - a wrong result type a ConversionError") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("boom", [](std::string m) -> int { throw std::invalid_argument(m); });
    tasks.add("text", [] { return std::string("x"); });
    atask::Supervisor sv(quiet_options("d2"));
    dist::Consumer worker(sv, tasks, fast(redis, "w2"));
    sv.start();
    dist::Client client({.broker = redis.url()});

    auto h = client.send<int>("boom", {"bad value"});
    REQUIRE(h.wait_for(patience));
    try {
      (void)h.get();
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "std::invalid_argument");
      CHECK(e.message() == "bad value");
      CHECK(contains(e.what(), h.id()));
    }
    CHECK(h.status() == dist::RemoteStatus::failed);
    // Arguments that do not fit: the registry's ConversionError, by name.
    auto wrong = client.send<int>("boom", {1, 2});
    REQUIRE(wrong.wait_for(patience));
    CHECK(contains(what_of<dist::RemoteError>([&] { (void)wrong.get(); }), "takes 1 argument, got 2"));
    CHECK_THROWS_AS((void)client.send<int>("text", {}).get_for(patience), atask::ConversionError);
  }

  TEST_CASE(
      "an unknown task name goes to the dead-letter stream, the worker goes on, and a requeue runs it") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("known", [] { return 1; });
    atask::Supervisor sv(quiet_options("d3"));
    dist::Consumer worker(sv, tasks, fast(redis, "w3"));
    sv.start();
    dist::Client client({.broker = redis.url()});

    auto lost = client.send("later", {7});
    REQUIRE(lost.wait_for(patience));
    CHECK(lost.status() == dist::RemoteStatus::dead);
    try {
      (void)lost.get();
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::NotFoundError");
      CHECK(contains(e.message(), "no task named 'later' is registered on worker w3"));
    }
    CHECK(client.send<int>("known", {}).get_for(patience) == 1);  // the worker went on

    const auto dead = client.dead_letters("default");
    REQUIRE(dead.size() == 1);
    CHECK(dead[0].task_id == lost.id());
    CHECK(dead[0].name == "later");
    CHECK(dead[0].args == "[7]");
    CHECK(dead[0].error_type == "atask::NotFoundError");

    tasks.add("later", [](int x) { return x * 6; });
    CHECK(client.requeue("default", dead[0].entry) == lost.id());
    CHECK(client.handle<int>(lost.id()).get_for(patience) == 42);
    CHECK(client.dead_letters("default").empty());
    CHECK_THROWS_AS(client.requeue("default", dead[0].entry), atask::BrokerError);
  }

  TEST_CASE("a message without a task id is dead-lettered with its raw fields, and good tasks keep flowing") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("one", [] { return 1; });
    atask::Supervisor sv(quiet_options("d4"));
    dist::Consumer worker(sv, tasks, fast(redis, "w4"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    REQUIRE(client.send<int>("one", {}).get_for(patience) == 1);  // the groups exist

    redis_call(redis, cmd("XADD", "atask:{default}:normal", "*", "junk", "1; FLUSHALL"));
    CHECK(client.send<int>("one", {}).get_for(patience) == 1);
    Reply dead;
    REQUIRE(eventually([&] {
      dead = redis_call(redis, cmd("XRANGE", "atask:{default}:dead", "-", "+"));
      return dead.elements.size() == 1;
    }));
    const auto& f = dead.elements[0].elements[1].elements;
    std::map<std::string, std::string> m;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) m[f[i].str] = f[i + 1].str;
    CHECK(m["etype"] == "atask::MalformedMessage");
    CHECK(m["raw.junk"] == "1; FLUSHALL");  // data, never evaluated
    CHECK(redis_call(redis, cmd("DBSIZE")).integer > 0);
    CHECK(redis_call(redis, cmd("XLEN", "atask:{default}:normal")).integer == 0);
  }

  TEST_CASE("priorities hold across the queue: a high task sent behind 2,000 low ones starts first") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::mutex m;
    std::vector<std::string> order;
    tasks.add("note", [&](std::string tag) {
      std::lock_guard lk(m);
      order.push_back(tag);
    });
    dist::Client client({.broker = redis.url()});
    std::vector<boost::json::array> lows(2000, boost::json::array{"low"});
    auto low = client.send_many("note", lows, {.priority = atask::Priority::low});
    auto high = client.send("note", {"high"}, {.priority = atask::Priority::high});
    auto critical = client.send("note", {"critical"}, {.priority = atask::Priority::critical});
    CHECK(client.queued("default") == std::array<std::size_t, 4>{2000, 0, 1, 1});

    atask::Supervisor sv(quiet_options("d5", 1));
    auto o = fast(redis, "w5");
    o.prefetch = 1;
    dist::Consumer worker(sv, tasks, o);
    sv.start();
    REQUIRE(high.wait_for(patience));
    REQUIRE(low.back().wait_for(60s));
    std::lock_guard lk(m);
    REQUIRE(order.size() == 2002);
    CHECK(order[0] == "critical");
    CHECK(order[1] == "high");
  }

  TEST_CASE("cancel: a queued task never runs - a running one sees its stop request") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::atomic<int> ran{0};
    std::promise<void> running;
    tasks.add("count", [&] { ++ran; });
    tasks.add("until_stopped", [&] {
      running.set_value();
      wait_until_stopped();
      throw atask::TaskCanceled("stopped on request");
    });
    dist::Client client({.broker = redis.url()});
    auto queued = client.send("count", {});
    CHECK(queued.cancel());
    CHECK_THROWS_AS((void)queued.get_for(patience), atask::TaskCanceled);
    CHECK(queued.status() == dist::RemoteStatus::canceled);
    CHECK_FALSE(queued.cancel());  // over already

    atask::Supervisor sv(quiet_options("d6"));
    dist::Consumer worker(sv, tasks, fast(redis, "w6"));
    sv.start();
    auto live = client.send("until_stopped", {});
    REQUIRE(running.get_future().wait_for(patience) == std::future_status::ready);
    CHECK(live.status() == dist::RemoteStatus::started);
    CHECK(live.cancel());
    CHECK_THROWS_AS((void)live.get_for(patience), atask::TaskCanceled);
    CHECK(live.status() == dist::RemoteStatus::canceled);
    CHECK(client.send("count", {}).wait_for(patience));
    CHECK(ran == 1);  // only the one sent after
  }

  TEST_CASE("a time limit stops the run and fails the task with a TimeoutError") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("slow", [] {
      wait_until_stopped();
      throw atask::TaskCanceled("stopped");
    });
    atask::Supervisor sv(quiet_options("d7"));
    dist::Consumer worker(sv, tasks, fast(redis, "w7"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    auto h = client.send("slow", {}, {.time_limit = 100ms});
    REQUIRE(h.wait_for(patience));
    try {
      (void)h.get();
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::TimeoutError");
      CHECK(e.message() == "time limit of 100 ms exceeded");
    }
  }

  TEST_CASE(
      "a task that returns a value when its time limit asks it to stop still fails with a TimeoutError") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("heeds", [] {
      wait_until_stopped();
      return 7;  // what it did so far
    });
    atask::Supervisor sv(quiet_options("d7b"));
    dist::Consumer worker(sv, tasks, fast(redis, "w7b"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("heeds", {}, {.time_limit = 100ms});
    REQUIRE(h.wait_for(patience));
    CHECK(h.status() == dist::RemoteStatus::failed);
    try {
      (void)h.get();
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::TimeoutError");
    }
  }

  TEST_CASE("fencing: a worker presumed dead cannot overwrite the newer attempt's result") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("answer", [] { return 42; });
    atask::Supervisor sv0(quiet_options("d8a"));
    {
      // A real consumer creates the groups, then leaves.
      atask::TaskRegistry none;
      dist::Consumer setup(sv0, none, fast(redis, "setup"));
      sv0.start();
      REQUIRE(eventually([&] { return redis_call(redis, cmd("EXISTS", "atask:w:setup")).integer == 1; }));
      setup.stop();
    }
    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("answer", {});
    // A "ghost" worker takes the task and goes silent (what a paused or
    // partitioned process looks like): registered, started, then nothing.
    const auto read =
        redis_call(redis, cmd("XREADGROUP", "GROUP", "w", "ghost", "STREAMS", "atask:{default}:normal", ">"));
    REQUIRE(read.elements.size() == 1);
    const std::string entry = read.elements[0].elements[1].elements[0].elements[0].str;
    const std::string key = "atask:t:" + h.id();
    redis_calls(redis, {cmd("FCALL", "atask_register", "2", "atask:workers", "atask:w:ghost", "ghost",
                            "streams", "atask:{default}:normal"),
                        cmd("FCALL", "atask_start", "3", key, "atask:{default}:normal",
                            "atask:{default}:dead", entry, "ghost", h.id())});
    CHECK(h.info().worker == "ghost");

    // A live worker's reaper hands the task back after dead_after; it runs again.
    atask::Supervisor sv(quiet_options("d8"));
    dist::Consumer worker(sv, tasks, fast(redis, "w8"));
    sv.start();
    CHECK(h.get_for(patience) == 42);
    CHECK(h.info().attempt == 2);
    CHECK(h.info().worker == "w8");
    CHECK(eventually([&] { return worker.info().reaped == 1; }));

    // The ghost wakes up and finishes attempt 1: fenced off.
    const auto late =
        redis_call(redis, cmd("FCALL", "atask_complete", "3", key, "atask:{default}:normal",
                              "atask:{default}:dead", entry, "ghost", "1", "succeeded", "-1", ""));
    CHECK(late.str == "stale");
    CHECK(client.handle<int>(h.id()).get_for(patience) == 42);
  }

  TEST_CASE(
      "stop lets running tasks finish, then hands back what has not run - another worker runs it once") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::promise<void> started;
    std::latch release(1);
    std::atomic<int> quick_runs{0};
    std::atomic<int> block_runs{0};
    tasks.add("block", [&] {
      // Handed back while it still runs, "block" may run again on w9b before w9a's late result lands.
      if (block_runs++ == 0) started.set_value();
      release.wait();  // ignores stop requests: the worst case for a stop
      return 1;
    });
    tasks.add("quick", [&] { return ++quick_runs; });
    dist::Client client({.broker = redis.url()});
    auto first = client.send<int>("block", {});
    std::vector<boost::json::array> five(5, boost::json::array{});
    auto rest = client.send_many<int>("quick", five, {.priority = atask::Priority::low});

    auto sv = std::make_unique<atask::Supervisor>(quiet_options("d9a", 1));
    auto o = fast(redis, "w9a");
    o.prefetch = 6;
    o.stop_timeout = 200ms;
    auto a = std::make_unique<dist::Consumer>(*sv, tasks, o);
    sv->start();
    REQUIRE(started.get_future().wait_for(patience) == std::future_status::ready);
    // One pool thread, held by "block": the five quick ones wait on the pool.
    a->stop();  // stop_timeout, cancel (the quick ones never ran), give up on "block", hand all back
    CHECK(quick_runs == 0);
    CHECK(a->info().succeeded == 0);
    release.count_down();  // "block" ends now, late: its result is stored once (or fenced off)

    atask::Supervisor sv2(quiet_options("d9b"));
    dist::Consumer b(sv2, tasks, fast(redis, "w9b"));
    sv2.start();
    CHECK(first.get_for(patience) == 1);
    for (auto& h : rest) CHECK(h.wait_for(patience));
    CHECK(quick_runs == 5);                                                                    // each once
    CHECK(redis_call(redis, cmd("ZRANGE", "atask:workers", "0", "-1")).elements.size() == 1);  // w9a left
    sv->stop();
  }

  TEST_CASE(
      "a worker stopped while it is still joining the cluster stops, and leaves no registration behind") {
    // The stop lands at a different point of the join each round: before the
    // connection, during FUNCTION LOAD, during the registration, after it.
    // A connection opened after the worker left kept the io_context busy,
    // and Supervisor::stop() never returned (found by the example in CI).
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("nop", [] {});
    for (int round = 0; round < 40; ++round) {
      CAPTURE(round);
      atask::Supervisor sv(quiet_options("d18-" + std::to_string(round)));
      dist::Consumer worker(sv, tasks, fast(redis, "w18-" + std::to_string(round)));
      sv.start();
      for (int i = 0; i < round % 8; ++i) (void)redis_call(redis, cmd("PING"));  // moves the stop along
      (void)call_within("Supervisor::stop()", [&] { return sv.stop(); });
      CHECK(redis_call(redis, cmd("ZCARD", "atask:workers")).integer == 0);
      CHECK(redis_call(redis, cmd("EXISTS", "atask:w:w18-" + std::to_string(round))).integer == 0);
    }
  }

  TEST_CASE("keys stay flat: 2,000 tasks leave no stream entry, pending entry or result past their TTL") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("id", [](int x) { return x; });
    atask::Supervisor sv(quiet_options("d10"));
    dist::Consumer worker(sv, tasks, fast(redis, "w10"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    std::vector<boost::json::array> args;
    for (int i = 0; i < 2000; ++i) args.push_back({i});
    auto hs = client.send_many<int>("id", args, {.result_ttl = 1s});
    for (int i = 0; i < 2000; ++i) REQUIRE(hs[static_cast<std::size_t>(i)].get_for(patience) == i);
    CHECK(redis_call(redis, cmd("XLEN", "atask:{default}:normal")).integer == 0);
    CHECK(redis_call(redis, cmd("XPENDING", "atask:{default}:normal", "w")).elements[0].integer == 0);
    // Results expire after their TTL (Redis expires lazily and by sampling).
    CHECK(eventually([&] { return redis_call(redis, cmd("KEYS", "atask:t:*")).elements.empty(); }, 15s));
    // The inbox of tasks handed to the worker is empty once it has read them.
    CHECK(eventually([&] { return redis_call(redis, cmd("XLEN", "atask:in:w10")).integer == 0; }));
    const std::set<std::string> fixed{"atask:{default}:low",  "atask:{default}:normal",
                                      "atask:{default}:high", "atask:{default}:critical",
                                      "atask:workers",        "atask:w:w10",
                                      "atask:reaper",         "atask:queues",
                                      "atask:in:w10",         "atask:{default}:idle"};
    for (const auto& k : redis_call(redis, cmd("KEYS", "*")).elements)
      CHECK_MESSAGE(fixed.count(k.str), k.str);
  }

  TEST_CASE("Redis restarted: the worker reconnects and resumes - the client retries within retry_for") {
    RedisServer redis({"appendonly yes", "appendfsync always"});
    atask::TaskRegistry tasks;
    tasks.add("twice", [](int x) { return 2 * x; });
    atask::Supervisor sv(quiet_options("d11"));
    dist::Consumer worker(sv, tasks, fast(redis, "w11"));
    sv.start();
    dist::Client client({.broker = redis.url(), .retry_for = 10s});
    CHECK(client.send<int>("twice", {1}).get_for(patience) == 2);
    redis.kill();
    redis.restart();
    CHECK(client.send<int>("twice", {2}).get_for(patience) == 4);

    dist::Client impatient({.broker = "redis://127.0.0.1:1", .connect_timeout = 500ms});
    CHECK(contains(what_of<atask::BrokerError>([&] { (void)impatient.send("twice", {3}); }),
                   "no connection to Redis"));
  }

  TEST_CASE("send_many sends send_chunk tasks per round trip - each chunk after the one before is answered") {
    RedisServer redis;
    // Redis counts the reads it makes from its clients: a chunk waits for
    // the answer to the one before, so 60 tasks two at a time take at least
    // 30 reads; all in one write, a few (60 sends are some 20 KB, and
    // Redis reads 16 KB at a time).
    const auto reads = [&] {
      const auto n = info_number(redis, "stats", "total_reads_processed:");
      REQUIRE(n);
      return *n;
    };
    const auto reads_for = [&](std::size_t chunk) {
      dist::Client client({.broker = redis.url(), .send_chunk = chunk});
      (void)client.queued("default");  // connected before counting
      const long long before = reads();
      auto hs = client.send_many("noop", std::vector<boost::json::array>(60));
      const long long n = reads() - before - 1;  // (less the INFO of the second reads())
      CHECK(hs.size() == 60);
      return n;
    };
    const long long two = reads_for(2), all = reads_for(1000);
    CHECK(two >= 30);
    CHECK(all < 30);
    MESSAGE("Redis reads for 60 sends, 2 per round trip: " << two << "; all at once: " << all);
    // Every one is queued once, whatever the chunks.
    CHECK(redis_call(redis, cmd("XLEN", dist::detail::stream_key("default", atask::Priority::normal)))
              .integer == 120);
  }

  TEST_CASE("bad options and misuse give clear errors") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    atask::Supervisor sv(quiet_options("d12"));
    CHECK(contains(what_of<atask::OptionsError>(
                       [&] { dist::Consumer c(sv, tasks, {.broker = redis.url(), .queues = {}}); }),
                   "no queue"));
    CHECK(contains(what_of<atask::OptionsError>(
                       [&] { dist::Consumer c(sv, tasks, {.broker = redis.url(), .queues = {"a b"}}); }),
                   "a queue name has only"));
    CHECK(contains(what_of<atask::OptionsError>([&] {
                     dist::Consumer c(sv, tasks, {.broker = redis.url(), .heartbeat = 2s, .dead_after = 1s});
                   }),
                   "must be longer than heartbeat"));
    CHECK(contains(what_of<atask::OptionsError>([&] { dist::Consumer c(sv, tasks, {.broker = "http://x"}); }),
                   "redis://"));
    CHECK(contains(what_of<atask::OptionsError>(
                       [&] { dist::Consumer c(sv, tasks, {.broker = redis.url(), .refill_wait = -1ms}); }),
                   "refill_wait is negative"));
    CHECK(contains(
        what_of<atask::OptionsError>([&] { dist::Client c({.broker = redis.url(), .send_chunk = 0}); }),
        "send_chunk must be at least 1"));
    dist::Client client({.broker = redis.url()});
    CHECK_THROWS_AS((void)client.send("x", {}, {.queue = "no spaces"}), atask::OptionsError);
    CHECK_THROWS_AS((void)client.send("x", {}, {.max_deliveries = 0}), atask::OptionsError);
    CHECK_THROWS_AS((void)client.send("", {}), atask::OptionsError);
    CHECK(client.send_many("x", {}).empty());
    sv.start();
    CHECK(contains(
        what_of<atask::LifecycleError>([&] { dist::Consumer c(sv, tasks, {.broker = redis.url()}); }),
        "before Supervisor::start()"));
  }

  TEST_CASE(
      "with AUTH: the worker warns when maxmemory-policy may evict tasks, and never logs the password") {
    RedisServer redis({"maxmemory-policy allkeys-lru", "requirepass s3cret-pw"});
    const std::string url = "redis://:s3cret-pw@127.0.0.1:" + std::to_string(redis.port());
    LogCapture log;
    auto o = quiet_options("d13");
    o.logger = log.logger();
    atask::TaskRegistry tasks;
    tasks.add("one", [] { return 1; });
    atask::Supervisor sv(o);
    dist::Consumer worker(sv, tasks, {.broker = url, .name = "w13"});
    sv.start();
    dist::Client client({.broker = url});
    CHECK(client.send<int>("one", {}).get_for(patience) == 1);
    CHECK(eventually([&] { return contains(log.text(), "maxmemory-policy 'allkeys-lru'"); }));
    CHECK(contains(log.text(), "set it to 'noeviction'"));
    sv.stop();
    CHECK_FALSE(contains(log.text(), "s3cret-pw"));
    // An ACL user (Redis 6+ AUTH user password) for another worker and client.
    redis_calls(redis, {cmd("AUTH", "s3cret-pw"),
                        cmd("ACL", "SETUSER", "svc", "on", ">svc-pw", "~*", "&*", "+@all")});
    const std::string acl = "redis://svc:svc-pw@127.0.0.1:" + std::to_string(redis.port());
    atask::Supervisor sv2(quiet_options("d13b"));
    dist::Consumer worker2(sv2, tasks, {.broker = acl, .name = "w13b"});
    sv2.start();
    dist::Client as_svc({.broker = acl});
    CHECK(as_svc.send<int>("one", {}).get_for(patience) == 1);
    dist::Client wrong({.broker = "redis://:nope@127.0.0.1:" + std::to_string(redis.port())});
    const std::string why = what_of<atask::BrokerError>([&] { (void)wrong.send("one", {}); });
    CHECK(contains(why, "no connection to Redis"));
    CHECK(contains(why, "WRONGPASS"));
    CHECK_FALSE(contains(why, "nope"));
  }

  TEST_CASE("progress reported by a task on a worker reaches the client's handle") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::promise<void> half_seen;
    auto half_seen_f = half_seen.get_future().share();
    tasks.add("steps", [half_seen_f] {
      CHECK(dist::report_progress(0.5, "half way\nsecond line"));
      // Go on once the client has seen it: nothing is folded away here.
      REQUIRE(half_seen_f.wait_for(patience) == std::future_status::ready);
      CHECK(dist::report_progress(7.0, "clamped"));
      return 3;
    });
    atask::Supervisor sv(quiet_options("d14"));
    dist::Consumer worker(sv, tasks, fast(redis, "w14"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("steps", {});
    std::mutex m;
    std::vector<std::pair<double, std::string>> seen;
    bool signalled = false;
    h.on_progress([&](const dist::RemoteProgress& p) {
      std::lock_guard lk(m);
      seen.emplace_back(p.fraction, p.message);
      if (p.fraction == 0.5 && !signalled) {  // (the message travels with its new line)
        signalled = true;
        half_seen.set_value();
      }
    });
    CHECK(h.get_for(patience) == 3);
    std::lock_guard lk(m);
    REQUIRE_FALSE(seen.empty());
    CHECK(seen.front() == std::pair<double, std::string>{0.5, "half way\nsecond line"});
    // The last report may arrive before or after the outcome; if before, it is clamped.
    if (seen.size() > 1) CHECK(seen.back() == std::pair<double, std::string>{1.0, "clamped"});

    // Outside a consumer's task: nothing to report to.
    CHECK_FALSE(dist::report_progress(0.1));
    CHECK_FALSE(sv.submit({}, [] { return dist::report_progress(0.1); }).get());
  }

  TEST_CASE("a coroutine task's progress reaches the client - reported after the coroutine was resumed") {
    RedisServer redis;
    // Opened by the client once it has seen the report: the coroutine waits on it.
    using Seen = asio::experimental::concurrent_channel<void(boost::system::error_code)>;
    std::optional<Seen> seen;
    atask::TaskRegistry tasks;
    tasks.add("co_steps", [&seen]() -> asio::awaitable<int> {
      asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
      co_await timer.async_wait(asio::use_awaitable);  // reported from a resumption, not the first run
      const bool sent = dist::report_progress(0.5, "from a coroutine");
      co_await seen->async_receive(asio::use_awaitable);
      co_return sent ? 5 : -1;
    });
    atask::Supervisor sv(quiet_options("d14c"));
    // The channel's service belongs to the aloop: the channel goes first.
    struct ResetFirst {
      std::optional<Seen>& s;
      ~ResetFirst() { s.reset(); }
    } reset_first{seen};
    dist::Consumer worker(sv, tasks, fast(redis, "w14c"));
    sv.start();
    seen.emplace(sv.default_aloop().get_executor(), 1);
    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("co_steps", {});
    std::mutex m;
    std::optional<dist::RemoteProgress> first;
    h.on_progress([&](const dist::RemoteProgress& p) {
      std::lock_guard lk(m);
      if (first) return;
      first = p;
      seen->try_send(boost::system::error_code{});
    });
    CHECK(h.get_for(patience) == 5);  // report_progress() said it was sent
    std::lock_guard lk(m);
    REQUIRE(first.has_value());
    CHECK(first->fraction == 0.5);
    CHECK(first->message == "from a coroutine");
  }

  TEST_CASE("a process task's progress reaches the client through the worker's pool") {
    RedisServer redis;
    const auto gate =
        std::filesystem::temp_directory_path() / ("atask-progress-gate-" + std::to_string(::getpid()));
    std::filesystem::remove(gate);
    REQUIRE(::mkfifo(gate.c_str(), 0600) == 0);
    atask::TaskRegistry tasks;
    tasks.add("child_steps", atask::process(&report_from_child));
    auto so = quiet_options("d14p");
    so.processes.pool_size = 1;
    atask::Supervisor sv(so);
    dist::Consumer worker(sv, tasks, fast(redis, "w14p"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("child_steps", {gate.string()});
    std::mutex m;
    std::promise<dist::RemoteProgress> first;
    bool got = false;
    h.on_progress([&](const dist::RemoteProgress& p) {
      std::lock_guard lk(m);
      if (!got) {
        got = true;
        first.set_value(p);
      }
    });
    auto f = first.get_future();
    const bool arrived = f.wait_for(patience) == std::future_status::ready;
    // Open the gate either way (without blocking when the child is not
    // there to read), so that the child does not wait for ever.
    const int fd = ::open(gate.c_str(), arrived ? O_WRONLY : O_WRONLY | O_NONBLOCK);
    if (fd >= 0) {
      (void)::write(fd, "x", 1);
      ::close(fd);
    }
    REQUIRE(arrived);
    const auto p = f.get();
    CHECK(p.fraction == 0.25);
    CHECK(p.message == "in a child");
    CHECK(h.get_for(patience) == 5);  // and report_progress() said it was sent
    std::filesystem::remove(gate);
    CHECK(sv.submit({}, atask::process(&report_unheard)).get() == true);
  }

  TEST_CASE("an outcome travels in the message to the client - one too large for it is read from Redis") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("echo", [](std::string s) { return s; });
    tasks.add("fail", [](std::string why) -> int { throw std::runtime_error(why); });
    atask::Supervisor sv(quiet_options("d19"));
    // Reads are counted below: a worker presumed dead on a loaded machine
    // (1 s of silence with fast()) would have its tasks started again, and
    // each such start reads the hash once more. Liveness is not this test's
    // subject: give it a minute.
    auto o = fast(redis, "w19");
    o.dead_after = 60s;
    dist::Consumer worker(sv, tasks, o);
    sv.start();
    dist::Client client({.broker = redis.url()});
    (void)client.send<std::string>("echo", {"warm up"}).get_for(patience);  // connections made

    const auto hmgets = [&] {
      return info_number(redis, "commandstats", "cmdstat_hmget:calls=").value_or(0);
    };
    // The functions read each task a fixed number of times; the client reads
    // it once more only when the outcome did not fit the message: 20 small
    // results and 20 large ones differ by exactly 20 reads.
    const auto reads_for = [&](const std::string& value) {
      const long long before = hmgets();
      std::vector<boost::json::array> args(20, boost::json::array{value});
      auto hs = client.send_many<std::string>("echo", args);
      for (auto& h : hs) CHECK(h.get_for(patience) == value);
      return hmgets() - before;
    };
    const std::string big(100'000, 'x');
    const long long small_reads = reads_for("small"), big_reads = reads_for(big);
    CHECK(big_reads - small_reads == 20);

    // Results that do not fit the message, errors with new lines and quotes:
    // the same outcome either way.
    CHECK(client.send<std::string>("echo", {big}).get_for(patience) == big);
    const std::string quoted = "line one\nline \"two\"\n\nend";
    CHECK(client.send<std::string>("echo", {quoted}).get_for(patience) == quoted);
    try {
      (void)client.send<int>("fail", {quoted}).get_for(patience);
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "std::runtime_error");
      CHECK(e.message() == quoted);
    }
    try {
      (void)client.send<int>("fail", {big}).get_for(patience);
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.message() == big);
    }
  }

  TEST_CASE("cancel reaches a running task at once (pub/sub), not a heartbeat later") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::promise<void> running;
    tasks.add("until_stopped", [&] {
      running.set_value();
      wait_until_stopped();
      throw atask::TaskCanceled("stopped on request");
    });
    atask::Supervisor sv(quiet_options("d15"));
    auto o = fast(redis, "w15");
    o.heartbeat = 60s;  // no heartbeat within the test: only the cancel channel can deliver it
    o.dead_after = 120s;
    dist::Consumer worker(sv, tasks, o);
    sv.start();
    dist::Client client({.broker = redis.url()});
    auto h = client.send("until_stopped", {});
    REQUIRE(running.get_future().wait_for(patience) == std::future_status::ready);
    CHECK(h.cancel());
    CHECK_THROWS_AS((void)h.get_for(patience), atask::TaskCanceled);
    // (The worker counts once Redis has answered; the client may hear first.)
    CHECK(eventually([&] { return worker.info().canceled == 1; }));
  }

  TEST_CASE(
      "entries with the same id in two streams are two tasks - handle() follows tasks of other senders") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("one", [] { return 1; });
    dist::Client client({.broker = redis.url()});
    (void)client.queued("default");  // connected: the functions are loaded
    // Stream entry ids are unique per stream only; two streams can hand out
    // the same id in the same millisecond (as a requeue after a stop does).
    const std::string a(32, 'a'), b(32, 'b');
    redis_calls(redis, {cmd("FCALL", "atask_enqueue", "2", "atask:t:" + a, "scratch", a, "one", "[]",
                            "default", "low", "", "60", "5", "0"),
                        cmd("FCALL", "atask_enqueue", "2", "atask:t:" + b, "scratch", b, "one", "[]",
                            "default", "high", "", "60", "5", "0"),
                        cmd("XADD", "atask:{default}:low", "1-1", "id", a),
                        cmd("XADD", "atask:{default}:high", "1-1", "id", b), cmd("DEL", "scratch")});
    auto ha = client.handle<int>(a);
    auto hb = client.handle<int>(b);
    atask::Supervisor sv(quiet_options("d16"));
    dist::Consumer worker(sv, tasks, fast(redis, "w16"));
    sv.start();
    CHECK(ha.get_for(patience) == 1);
    CHECK(hb.get_for(patience) == 1);
  }
}
