// Inspecting a cluster through the client: workers with what their
// heartbeats say, queues with their counts, and purge.
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/tasks/registry.hpp>

#include <doctest/doctest.h>

#include "distributed_fixtures.hpp"
#include "fixtures.hpp"
#include "redis_server.hpp"

#include <algorithm>
#include <chrono>
#include <latch>
#include <string>
#include <unistd.h>
#include <vector>

namespace dist = atask::distributed;
using namespace std::chrono_literals;
using namespace test;

TEST_SUITE("distributed") {
  TEST_CASE("workers() lists each worker with its queues, labels, running task ids and counters") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::latch running(1);
    tasks.add("ok", [] { return 1; });
    tasks.add("boom", []() -> int { throw std::runtime_error("boom"); });
    tasks.add("hold", [&] {
      running.count_down();
      wait_until_stopped();
    });
    atask::Supervisor sv(options("i1"));
    auto o = fast(redis, "wi1");
    o.queues = {"default", "other"};
    o.labels = {{"plugins", "demo-tasks@1.0.0"}, {"role", "test"}};
    dist::Consumer worker(sv, tasks, o);
    sv.start();
    dist::Client client({.broker = redis.url()});
    CHECK(client.send<int>("ok", {}).get_for(patience) == 1);
    CHECK_THROWS_AS((void)client.send<int>("boom", {}).get_for(patience), dist::RemoteError);
    auto held = client.send("hold", {});
    running.wait();

    // The heartbeat (every 100 ms) publishes the running ids and the counters.
    std::vector<dist::Client::WorkerRecord> ws;
    REQUIRE(eventually([&] {
      ws = client.workers();
      return ws.size() == 1 && ws[0].running == std::vector<std::string>{held.id()} && ws[0].failed == 1 &&
             ws[0].succeeded == 1;
    }));
    const auto& w = ws[0];
    CHECK(w.name == "wi1");
    CHECK(w.pid == ::getpid());
    CHECK_FALSE(w.host.empty());
    CHECK(w.queues == std::vector<std::string>{"default", "other"});
    CHECK(w.succeeded == 1);
    CHECK(w.started_ms > 0);
    CHECK(w.heartbeat_ms >= w.started_ms);
    CHECK(w.heartbeat_age_ms < 5000);
    CHECK(w.labels == std::vector<std::pair<std::string, std::string>>{{"plugins", "demo-tasks@1.0.0"},
                                                                       {"role", "test"}});

    CHECK(held.cancel());  // it returns once asked to stop
    CHECK(held.wait_for(patience));
    sv.stop();
    CHECK(client.workers().empty());  // a worker that stops leaves the list

    CHECK_THROWS_AS(dist::Consumer(sv, tasks, {.broker = redis.url(), .labels = {{"bad key", "x"}}}),
                    atask::OptionsError);
  }

  TEST_CASE(
      "queues() and queue_stats() count waiting tasks per priority, delayed, running and dead - purge "
      "cancels what no worker took") {
    RedisServer redis;
    dist::Client client({.broker = redis.url()});
    CHECK(client.queues().empty());
    auto low = client.send("nobody.runs.this", {}, {.queue = "q1", .priority = atask::Priority::low});
    auto high1 = client.send("nobody.runs.this", {}, {.queue = "q1", .priority = atask::Priority::high});
    auto high2 = client.send("nobody.runs.this", {}, {.queue = "q1", .priority = atask::Priority::high});
    auto later = client.send("nobody.runs.this", {}, {.queue = "q1", .countdown = 600s});
    auto elsewhere = client.send("nobody.runs.this", {}, {.queue = "q2"});
    CHECK(client.queues() == std::vector<std::string>{"q1", "q2"});

    auto s = client.queue_stats("q1");
    CHECK(s.queue == "q1");
    CHECK(s.queued == std::array<std::size_t, 4>{1, 0, 2, 0});
    CHECK(s.delayed == 1);
    CHECK(s.running == 0);
    CHECK(s.dead == 0);
    CHECK(s.oldest_ms >= 0);
    CHECK(s.oldest_ms < 60'000);

    CHECK(client.purge("q1") == 4);
    for (auto* h : {&low, &high1, &high2, &later}) {
      CHECK(h->status() == dist::RemoteStatus::canceled);
      CHECK(test::contains(what_of<atask::TaskCanceled>([&] { (void)h->get_for(patience); }),
                           "purged from queue q1"));
    }
    s = client.queue_stats("q1");
    CHECK(s.queued == std::array<std::size_t, 4>{});
    CHECK(s.delayed == 0);
    CHECK(s.oldest_ms == 0);
    CHECK(client.purge("q1") == 0);
    CHECK(elsewhere.status() == dist::RemoteStatus::queued);  // another queue: untouched
    CHECK_THROWS_AS((void)client.purge("bad queue"), atask::OptionsError);
  }

  TEST_CASE("purge leaves the tasks a worker has taken and counts them as running") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::latch running(1);
    tasks.add("hold", [&] {
      running.count_down();
      wait_until_stopped();
      return 7;
    });
    atask::Supervisor sv(options("i3", 1));
    auto o = fast(redis, "wi3");
    o.prefetch = 1;
    dist::Consumer worker(sv, tasks, o);
    sv.start();
    dist::Client client({.broker = redis.url()});
    auto taken = client.send<int>("hold", {});
    running.wait();
    auto waiting = client.send<int>("hold", {});
    REQUIRE(eventually([&] { return client.queue_stats("default").running == 1; }));
    CHECK(client.queue_stats("default").queued[1] == 1);
    CHECK(client.purge("default") == 1);
    CHECK(waiting.status() == dist::RemoteStatus::canceled);
    CHECK(taken.status() == dist::RemoteStatus::started);
    CHECK(taken.cancel());  // it returns once asked to stop
    CHECK(taken.get_for(patience) == 7);
  }
}
