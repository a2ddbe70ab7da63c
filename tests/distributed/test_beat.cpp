// The beat: scheduled tasks on the cluster, each tick once however many
// beats run.
#include <atask/distributed/beat.hpp>
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/tasks/registry.hpp>

#include <doctest/doctest.h>

#include "distributed_fixtures.hpp"
#include "fixtures.hpp"
#include "redis_calls.hpp"
#include "redis_server.hpp"

#include <atomic>
#include <chrono>
#include <string>

namespace dist = atask::distributed;
using atask::redis::cmd;
using namespace std::chrono_literals;
using namespace test;

namespace {

long long count_keys(const RedisServer& r, const std::string& pattern) {
  return static_cast<long long>(redis_call(r, cmd("KEYS", pattern)).elements.size());
}

}  // namespace

TEST_SUITE("distributed") {
  TEST_CASE("two beats: each tick is sent once - the leader's stop hands the schedule to the other") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::atomic<int> ticks{0}, seconds{0};
    tasks.add("tick", [&] { ++ticks; });
    tasks.add("second", [&] { ++seconds; });
    atask::Supervisor worker_sv(options("b-worker"));
    dist::Consumer worker(worker_sv, tasks, fast(redis, "bw"));
    worker_sv.start();

    const std::vector<dist::BeatEntry> entries{{.name = "tick", .every = 100ms, .task = "tick"},
                                               {.name = "second", .cron = "* * * * * *", .task = "second"}};
    auto sv1 = std::make_unique<atask::Supervisor>(options("b1"));
    auto sv2 = std::make_unique<atask::Supervisor>(options("b2"));
    auto b1 = std::make_unique<dist::Beat>(
        *sv1, entries, dist::BeatOptions{.broker = redis.url(), .name = "b1", .lease = 600ms});
    dist::Beat b2(*sv2, entries, {.broker = redis.url(), .name = "b2", .lease = 600ms});
    sv1->start();
    sv2->start();
    REQUIRE(eventually([&] { return ticks >= 10 && seconds >= 2; }));
    CHECK(b1->info().leader != b2.info().leader);  // one leads
    const auto first = b1->info().leader ? b1.get() : &b2;
    // Stopping the leader gives its lease up: the other goes on.
    const bool b1_led = b1->info().leader;
    if (b1_led) {
      sv1->stop();
    } else {
      sv2->stop();
    }
    (void)first;
    const int before = ticks;
    REQUIRE(eventually([&] { return ticks >= before + 5; }));
    CHECK((b1_led ? b2.info().leader : b1->info().leader));
    // Each tick sent once: the tasks that ran are the tasks the beats sent,
    // and as many as the distinct ticks in Redis.
    REQUIRE(eventually([&] {
      const auto i1 = b1->info(), i2 = b2.info();
      return static_cast<long long>(i1.fired + i2.fired) == ticks + seconds &&
             count_keys(redis, "atask:t:beat:*") == ticks + seconds;
    }));
    sv1->stop();
    sv2->stop();
  }

  TEST_CASE("missed ticks after an outage: run_once fires the latest, run_all each, skip none") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("job", [](std::string) {});
    // Each schedule last fired ten and a half hours ago, hourly: ten ticks missed.
    const auto ago = std::chrono::duration_cast<std::chrono::milliseconds>(
                         (std::chrono::system_clock::now() - 10h - 30min).time_since_epoch())
                         .count();
    for (const char* n : {"once", "all", "skip"})
      (void)redis_call(redis, cmd("HSET", "atask:beat", n, std::to_string(ago)));
    atask::Supervisor sv(options("b3"));
    dist::Beat beat(
        sv,
        {{.name = "once",
          .every = 1h,
          .task = "job",
          .args = {"once"},
          .missed = dist::MissedTicks::run_once},
         {.name = "all", .every = 1h, .task = "job", .args = {"all"}, .missed = dist::MissedTicks::run_all},
         {.name = "skip", .every = 1h, .task = "job", .args = {"skip"}, .missed = dist::MissedTicks::skip}},
        {.broker = redis.url()});
    sv.start();
    // (fired and skipped are counted schedule by schedule: wait for both)
    REQUIRE(eventually([&] { return beat.info().fired == 11 && beat.info().skipped == 9 + 10; }));
    CHECK(count_keys(redis, "atask:t:beat:once:*") == 1);
    CHECK(count_keys(redis, "atask:t:beat:all:*") == 10);
    CHECK(count_keys(redis, "atask:t:beat:skip:*") == 0);
    // Every schedule moved on to its latest tick.
    const auto latest = std::to_string(ago + 10 * 3600 * 1000LL);
    for (const char* n : {"once", "all", "skip"})
      CHECK(redis_call(redis, cmd("HGET", "atask:beat", n)).str == latest);
    // The once task is the latest tick's.
    CHECK(count_keys(redis, "atask:t:beat:once:" + latest) == 1);
    dist::Client client({.broker = redis.url()});
    CHECK(client.queued("default")[static_cast<int>(atask::Priority::normal)] == 11);
  }

  TEST_CASE("beat options: bad entries are refused with the reason") {
    atask::Supervisor sv(options("b4"));
    const auto refused = [&](dist::BeatEntry e) {
      return what_of<atask::OptionsError>(
          [&] { dist::Beat b(sv, {std::move(e)}, {.broker = "redis://127.0.0.1:1"}); });
    };
    CHECK(contains(refused({.name = "", .every = 1s, .task = "t"}), "no name"));
    CHECK(contains(refused({.name = "a", .every = 1s}), "no task"));
    CHECK(contains(refused({.name = "a", .task = "t"}), "neither"));
    CHECK(contains(refused({.name = "a", .cron = "* * * * *", .every = 1s, .task = "t"}), "both"));
    CHECK(contains(refused({.name = "a", .cron = "61 * * * *", .task = "t"}), "minute"));
    CHECK(contains(refused({.name = "a", .cron = "* * * * *", .time_zone = "Mars/Olympus", .task = "t"}),
                   "Mars/Olympus"));
    CHECK(contains(
        what_of<atask::OptionsError>([&] {
          dist::Beat b(sv, {{.name = "a", .every = 1s, .task = "t"}, {.name = "a", .every = 2s, .task = "t"}},
                       {.broker = "redis://127.0.0.1:1"});
        }),
        "twice"));
  }
}
