// Delivery policy in the distributed mode: delayed tasks (countdown, eta)
// and retries with back-off, against a redis-server the test starts.
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/process/process.hpp>
#include <atask/tasks/registry.hpp>

#include "distributed/consumer/promote_wait.hpp"

#include <doctest/doctest.h>

#include "distributed_fixtures.hpp"
#include "fixtures.hpp"
#include "log_capture.hpp"
#include "redis_calls.hpp"
#include "redis_server.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <condition_variable>
#include <chrono>
#include <mutex>
#include <thread>
#include <stdexcept>
#include <string>
#include <vector>

namespace dist = atask::distributed;
using atask::redis::cmd;
using namespace std::chrono_literals;
using namespace test;

namespace {

// A process task whose child dies every time.
int crash_in_child(int) {
  std::abort();
}

// When each run of a task started (steady clock), for the back-off checks.
struct Runs {
  std::mutex m;
  std::vector<std::chrono::steady_clock::time_point> at;
  std::size_t note() {
    std::lock_guard lk(m);
    at.push_back(std::chrono::steady_clock::now());
    return at.size();
  }
  std::vector<std::chrono::steady_clock::time_point> all() {
    std::lock_guard lk(m);
    return at;
  }
};

}  // namespace

TEST_SUITE("distributed") {
  TEST_CASE("after a promote, a due announced while the call ran counts too - the earlier due wins") {
    // A task delayed while atask_promote runs may be missing from the call's
    // answer; its message came while the delay loop was not waiting on its
    // timer. The loop used to wait for the answer's (later) due instead.
    using atask::distributed::detail::promote_wait;
    const auto block = 1000ms;
    const std::int64_t now = 1'000'000;
    // Nothing heard: Redis's answer.
    CHECK(promote_wait(now + 300, -1, now, block).wait == 300ms);
    CHECK(promote_wait(now + 300, -1, now, block).next_due == now + 300);
    CHECK(promote_wait(-1, -1, now, block).wait == block);  // none delayed: the safety net
    CHECK(promote_wait(now + 5000, -1, now, block).wait == block);
    CHECK(promote_wait(now - 20, -1, now, block).wait == 0ms);  // due already
    // Heard an earlier due: it wins, also when Redis knew of none.
    CHECK(promote_wait(now + 300, now + 40, now, block).wait == 40ms);
    CHECK(promote_wait(now + 300, now + 40, now, block).next_due == now + 40);
    CHECK(promote_wait(-1, now + 40, now, block).wait == 40ms);
    CHECK(promote_wait(-1, now + 40, now, block).next_due == now + 40);
    // Heard a later one: Redis's earlier due stands.
    CHECK(promote_wait(now + 300, now + 900, now, block).wait == 300ms);
    CHECK(promote_wait(now + 300, now + 900, now, block).next_due == now + 300);
    // A due not named (a message missed while unsubscribed): look again at once.
    CHECK(promote_wait(now + 300, 0, now, block).wait == 0ms);
    CHECK(promote_wait(-1, 0, now, block).wait == 0ms);
  }

  TEST_CASE("countdown and eta: a delayed task waits in Redis and runs once when due - cancel removes it") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::atomic<int> runs{0};
    tasks.add("tick", [&](int x) {
      ++runs;
      return x;
    });
    atask::Supervisor sv(options("s1"));
    dist::Consumer worker(sv, tasks, fast(redis, "ws1"));
    sv.start();
    dist::Client client({.broker = redis.url()});

    auto later = client.send<int>("tick", {1}, {.countdown = 400ms});
    auto at = client.send<int>("tick", {2}, {.eta = std::chrono::system_clock::now() + 300ms});
    auto never = client.send<int>("tick", {3}, {.countdown = 600s});
    // Sent: all three wait in the delayed set, none in a stream.
    CHECK(client.delayed("default") >= 2);  // (the first two may be due already on a slow machine)
    CHECK(never.status() == dist::RemoteStatus::delayed);
    CHECK(never.info().due_ms > never.info().created_ms);

    CHECK(later.get_for(patience) == 1);
    CHECK(at.get_for(patience) == 2);
    for (auto* h : {&later, &at}) {
      const auto i = h->info();
      CHECK(i.due_ms > 0);
      CHECK(i.started_ms >= i.due_ms);  // never early
      CHECK(i.attempt == 1);
    }
    CHECK(later.info().due_ms - later.info().created_ms >= 400);

    // Cancel: gone from the delayed set, canceled, never run.
    CHECK(never.cancel());
    CHECK_THROWS_AS((void)never.get_for(patience), atask::TaskCanceled);
    CHECK(client.delayed("default") == 0);
    CHECK(runs == 2);
    // Counted once Redis answered the completion: maybe after the client saw it.
    CHECK(eventually([&] { return worker.info().succeeded == 2; }));

    CHECK_THROWS_AS((void)client.send("tick", {1}, {.countdown = -1ms}), atask::OptionsError);
  }

  TEST_CASE("a worker that cannot promote delayed tasks says so once, and promotes them when it can again") {
    RedisServer redis;
    // The delayed set of the queue is a string: atask_promote fails with
    // WRONGTYPE on every call until it is gone.
    redis_call(redis, cmd("SET", "atask:{default}:delayed", "not a sorted set"));
    LogCapture log;
    auto o = options("s1p");
    o.logger = log.logger();
    atask::TaskRegistry tasks;
    tasks.add("tick", [](int x) { return x; });
    atask::Supervisor sv(o);
    auto wo = fast(redis, "ws1p");
    wo.max_backoff = 200ms;
    dist::Consumer worker(sv, tasks, wo);
    sv.start();
    // Redis counts the errors it answered: three failed tries, said once.
    CHECK(eventually(
        [&] { return info_number(redis, "errorstats", "errorstat_WRONGTYPE:count=").value_or(0) >= 3; }));
    CHECK(contains(log.text(), "atask_promote"));
    CHECK(log.count("WRONGTYPE") == 1);

    redis_call(redis, cmd("DEL", "atask:{default}:delayed"));
    dist::Client client({.broker = redis.url()});
    CHECK(client.send<int>("tick", {5}, {.countdown = 100ms}).get_for(patience) == 5);
    CHECK(contains(log.text(), "atask_promote works again"));
    CHECK(log.count("WRONGTYPE") == 1);
  }

  TEST_CASE("a delayed task survives the restart of every worker and of Redis (AOF), and runs once") {
    RedisServer redis({"appendonly yes", "appendfsync always"});
    atask::TaskRegistry tasks;
    std::atomic<int> runs{0};
    tasks.add("once", [&] { return ++runs; });
    dist::Client client({.broker = redis.url(), .retry_for = 10s});
    std::optional<dist::RemoteHandle<int>> h;
    {
      atask::Supervisor sv(options("s2a"));
      dist::Consumer worker(sv, tasks, fast(redis, "ws2a"));
      sv.start();
      h = client.send<int>("once", {}, {.countdown = 700ms});
      CHECK(h->status() == dist::RemoteStatus::delayed);
      sv.stop();  // no worker is left
    }
    redis.kill();
    redis.restart();
    // Whether it fell due while nobody ran, or falls due now: it runs once.
    atask::Supervisor sv(options("s2b"));
    dist::Consumer worker(sv, tasks, fast(redis, "ws2b"));
    sv.start();
    CHECK(h->get_for(patience) == 1);
    CHECK(runs == 1);
    CHECK(client.delayed("default") == 0);
    // Its due time came through the restart, and it did not start before it.
    const auto i = h->info();
    CHECK(i.due_ms - i.created_ms >= 700);
    CHECK(i.started_ms >= i.due_ms);
    CHECK(i.attempt == 1);
  }

  TEST_CASE("retries: a failing task runs again as a new attempt of the same id, after its back-off") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    Runs flaky_runs;
    tasks.add("flaky", [&] {
      if (flaky_runs.note() < 3) throw std::runtime_error("not yet");
      return 42;
    });
    std::atomic<int> broken_runs{0};
    tasks.add("broken", [&]() -> int {
      ++broken_runs;
      throw std::runtime_error("always");
    });
    std::atomic<int> picky_runs{0};
    tasks.add("picky", [&]() -> int {
      ++picky_runs;
      throw std::logic_error("a bug, not a hiccup");
    });
    // The worker's registry default: used when the send says nothing.
    Runs default_runs;
    tasks.add("by_default",
              [&] {
                if (default_runs.note() < 2) throw std::runtime_error("first time");
                return 7;
              },
              {.retry = {.max_attempts = 2, .delays = {10ms}}});
    atask::Supervisor sv(options("s3"));
    dist::Consumer worker(sv, tasks, fast(redis, "ws3"));
    sv.start();
    dist::Client client({.broker = redis.url()});

    auto h = client.send<int>("flaky", {},
                              {.retry = atask::RetryPolicy{.max_attempts = 5, .delays = {150ms, 300ms}}});
    CHECK(h.get_for(patience) == 42);
    CHECK(h.attempt() == 3);
    const auto tries = h.attempts();
    REQUIRE(tries.size() == 2);
    CHECK(tries[0].attempt == 1);
    CHECK(tries[1].attempt == 2);
    CHECK(tries[0].error_type == "std::runtime_error");
    CHECK(tries[0].error_message == "not yet");
    CHECK(tries[0].worker == "ws3");
    // The back-off, loosely: never shorter than asked.
    const auto at = flaky_runs.all();
    REQUIRE(at.size() == 3);
    CHECK(at[1] - at[0] >= 150ms);
    CHECK(at[2] - at[1] >= 300ms);

    // Every attempt fails: the dead letters, with each attempt's error.
    auto dead =
        client.send<int>("broken", {}, {.retry = atask::RetryPolicy{.max_attempts = 3, .backoff = 10ms}});
    try {
      (void)dead.get_for(patience);
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "std::runtime_error");
      CHECK(e.message() == "always");
    }
    CHECK(dead.status() == dist::RemoteStatus::dead);
    CHECK(broken_runs == 3);
    auto letters = client.dead_letters("default");
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].task_id == dead.id());
    REQUIRE(letters[0].attempts.size() == 3);
    CHECK(letters[0].attempts[2].attempt == 3);
    CHECK(letters[0].attempts[2].error_message == "always");

    // An error the policy does not retry fails at once, and stays out of the dead letters.
    auto picky = client.send<int>("picky", {},
                                  {.retry = atask::RetryPolicy{.max_attempts = 3, .on = {"my::Transient"}}});
    CHECK_THROWS_AS((void)picky.get_for(patience), dist::RemoteError);
    CHECK(picky.status() == dist::RemoteStatus::failed);
    CHECK(picky_runs == 1);

    // The task's default on the worker.
    CHECK(client.send<int>("by_default", {}).get_for(patience) == 7);
    CHECK(default_runs.all().size() == 2);
    CHECK(eventually(
        [&] { return worker.info().retried == 2 + 2 + 1; }));  // counted when atask_complete answers

    CHECK(client.purge_dead("default") == 1);
    CHECK(client.dead_letters("default").empty());
  }

  TEST_CASE(
      "an idempotency key: a second send returns the first task, from any client, until its result expires") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::atomic<int> runs{0};
    Event release;
    OpenOnExit open{&release};
    tasks.add("charge", [&](int cents) {
      ++runs;
      if (!release.wait_for()) throw std::runtime_error("never released");
      return cents;
    });
    atask::Supervisor sv(options("s5"));
    dist::Consumer worker(sv, tasks, fast(redis, "ws5"));
    sv.start();
    dist::Client a({.broker = redis.url()}), b({.broker = redis.url()});

    const dist::SendOptions once{.result_ttl = 1s, .idempotency_key = "order-17"};
    auto first = a.send<int>("charge", {500}, once);
    auto again = a.send<int>("charge", {999}, once);  // same client: the same task
    auto other = b.send<int>("charge", {999}, once);  // another client: the same task
    CHECK(again.id() == first.id());
    CHECK(other.id() == first.id());
    release.set();
    CHECK(first.get_for(patience) == 500);
    CHECK(again.get_for(patience) == 500);
    CHECK(other.get_for(patience) == 500);  // told by pub/sub, like the sender
    // Ended, within its result_ttl: still the same task, its result at once.
    auto late = b.send<int>("charge", {1}, once);
    CHECK(late.id() == first.id());
    CHECK(late.get_for(patience) == 500);
    CHECK(runs == 1);
    // Once the result has expired, the key is free again.
    CHECK(eventually([&] { return redis_call(redis, cmd("EXISTS", "atask:idem:order-17")).integer == 0; }));
    auto fresh = a.send<int>("charge", {2}, once);
    CHECK(fresh.id() != first.id());
    CHECK(fresh.get_for(patience) == 2);
    CHECK(runs == 2);

    CHECK_THROWS_AS((void)a.send_many("charge", {{1}, {2}}, {.idempotency_key = "k"}), atask::OptionsError);
    CHECK_THROWS_AS((void)a.send("charge", {1}, {.idempotency_key = ""}), atask::OptionsError);
  }

  TEST_CASE("a rate limit spaces the starts evenly across workers - a task over it waits once, never spins") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("paced", [](int n) { return n; }, {.limits = {.max_starts = 20, .per = 1s}});  // one per 50 ms
    tasks.add("free", [](int n) { return n; });
    atask::Supervisor sv1(options("s6a", 4)), sv2(options("s6b", 4));
    auto o1 = fast(redis, "ws6a"), o2 = fast(redis, "ws6b");
    o1.prefetch = o2.prefetch = 16;
    dist::Consumer w1(sv1, tasks, o1), w2(sv2, tasks, o2);
    sv1.start();
    sv2.start();
    dist::Client client({.broker = redis.url()});
    std::vector<boost::json::array> args;
    for (int i = 0; i < 30; ++i) args.push_back({i});
    auto hs = client.send_many<int>("paced", args);
    auto unpaced = client.send_many<int>("free", args);
    for (int i = 0; i < 30; ++i) CHECK(hs[i].get_for(patience) == i);  // none lost
    for (int i = 0; i < 30; ++i) CHECK(unpaced[i].get_for(patience) == i);
    std::vector<std::int64_t> starts;
    for (auto& h : hs) starts.push_back(h.info().started_ms);
    std::sort(starts.begin(), starts.end());
    // One start per 50 ms, with a slack of a tenth of max_starts (2
    // intervals) for starts that came late: 27 intervals at least, whatever
    // the load.
    CHECK(starts.back() - starts.front() >= (30 - 1 - 2) * 50);
    // Not spun on: a task over the limit waits for a start time of its own
    // (a second wait only when the ones before it started late).
    CHECK(w1.info().received + w2.info().received <= 3 * 30 + 30);
    CHECK(redis_call(redis, cmd("HGET", "atask:limits", "t:paced")).str == "20 1000 0");
    CHECK(redis_call(redis, cmd("HEXISTS", "atask:limits", "t:free")).integer == 0);
  }

  TEST_CASE("a rate-limited backlog whose times passed with no worker running waits once more, not spun on") {
    // 400 tasks at 50/s, each given a start time of its own; the only worker
    // goes after 100 of them, and a new one comes once 100 more times have
    // passed. Those 100 come back together: the slack lets a few start, and
    // each of the others gets a new time of its own. They used to share the
    // first free time, come back together every 20 ms and bounce until the
    // last of them ran: 24,000 to 33,000 stream entries for these 400 tasks.
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("paced", [](int n) { return n; }, {.limits = {.max_starts = 50, .per = 1s}});
    dist::Client client({.broker = redis.url()});
    std::vector<boost::json::array> args;
    for (int i = 0; i < 400; ++i) args.push_back({i});
    std::vector<dist::RemoteHandle<int>> hs;
    {
      atask::Supervisor sv(options("s6c", 4));
      auto o = fast(redis, "ws6c");
      o.prefetch = 16;
      dist::Consumer w(sv, tasks, o);
      sv.start();
      hs = client.send_many<int>("paced", args);
      REQUIRE(hs[99].get_for(patience) == 99);
      sv.stop();
    }
    REQUIRE(eventually(
        [&] {
          return redis_call(redis, cmd("ZCOUNT", "atask:{default}:delayed", "-inf",
                                       std::to_string(redis_now_ms(redis))))
                     .integer >= 100;
        },
        patience));
    atask::Supervisor sv(options("s6d", 4));
    auto o = fast(redis, "ws6d");
    o.prefetch = 16;
    dist::Consumer w(sv, tasks, o);
    sv.start();
    for (int i = 0; i < 400; ++i) CHECK(hs[i].get_for(patience) == i);  // none lost
    // Every entry its stream was given: one per send, one per wait.
    const auto added = entries_added(redis, "atask:{default}:normal");
    MESSAGE("stream entries for 400 tasks: " << added);
    CHECK(added >= 400 + 300);  // all but the first few waited once at least
    CHECK(added <= 4 * 400);    // measured: 889
  }

  TEST_CASE("tasks sent one at a time faster than their rate limit each wait once, not spun on") {
    // The common case of a limit: 200 sends, one every 7 ms, to a limit of
    // 50/s, with the worker there; the tasks come about three times as fast
    // as it lets them in. A send that comes just before a task coming back
    // at its time takes its place (the slack allows it), and that task is
    // put off again. Such tasks used to share the first free time, so their
    // number grew and they all came back together every 20 ms: 1,049 to
    // 2,066 stream entries in six runs of the old rule (up to 9,149 with a
    // send every 10 ms). Each now gets a time of its own: 392.
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("paced", [](int n) { return n; }, {.limits = {.max_starts = 50, .per = 1s}});
    atask::Supervisor sv(options("s6e", 4));
    auto o = fast(redis, "ws6e");
    o.prefetch = 16;
    dist::Consumer w(sv, tasks, o);
    sv.start();
    dist::Client client({.broker = redis.url()});
    std::vector<dist::RemoteHandle<int>> hs;
    auto next = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) {
      hs.push_back(client.send<int>("paced", {i}));
      next += 7ms;  // the pace of the sends, not a wait for anything
      std::this_thread::sleep_until(next);
    }
    for (int i = 0; i < 200; ++i) CHECK(hs[i].get_for(patience) == i);  // none lost
    const auto added = entries_added(redis, "atask:{default}:normal");
    MESSAGE("stream entries for 200 tasks: " << added);
    CHECK(added >= 200 + 50);  // half the sends came too early at least
    CHECK(added <= 3 * 200);
  }

  TEST_CASE(
      "a concurrency limit: at most K run at once across workers - the others wait in line, then all run") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::mutex m;
    std::condition_variable cv;
    int running = 0, most = 0;
    bool open_gate = false;
    tasks.add("licensed",
              [&](int n) {
                std::unique_lock lk(m);
                most = std::max(most, ++running);
                cv.notify_all();
                cv.wait_for(lk, patience, [&] { return open_gate; });
                --running;
                return n;
              },
              {.limits = {.max_running = 2}});
    atask::Supervisor sv1(options("s7a", 4)), sv2(options("s7b", 4));
    dist::Consumer w1(sv1, tasks, fast(redis, "ws7a")), w2(sv2, tasks, fast(redis, "ws7b"));
    sv1.start();
    sv2.start();
    dist::Client client({.broker = redis.url()});
    std::vector<boost::json::array> args;
    for (int i = 0; i < 8; ++i) args.push_back({i});
    auto hs = client.send_many<int>("licensed", args);
    {
      std::unique_lock lk(m);
      REQUIRE(cv.wait_for(lk, patience, [&] { return running == 2; }));
    }
    // Eight pool threads are free, yet six tasks wait in line in Redis.
    CHECK(eventually([&] { return redis_call(redis, cmd("LLEN", "atask:cc:w:t:licensed")).integer == 6; }));
    CHECK(redis_call(redis, cmd("SCARD", "atask:cc:t:licensed")).integer == 2);
    CHECK(hs[0].status() != dist::RemoteStatus::succeeded);
    {
      std::lock_guard lk(m);
      open_gate = true;
    }
    cv.notify_all();
    for (int i = 0; i < 8; ++i) CHECK(hs[i].get_for(patience) == i);
    std::lock_guard lk(m);
    CHECK(most == 2);
    CHECK(redis_call(redis, cmd("EXISTS", "atask:cc:t:licensed")).integer == 0);  // every place given back
  }

  TEST_CASE(
      "a queue's rate limit spaces the starts of every task in it across workers - other queues are free") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("a", [](int n) { return n; });  // no limits of their own
    tasks.add("b", [](int n) { return n; });
    atask::Supervisor sv1(options("s11a", 4)), sv2(options("s11b", 4));
    auto o1 = fast(redis, "ws11a"), o2 = fast(redis, "ws11b");
    for (auto* o : {&o1, &o2}) {
      o->queues = {"paced", "default"};
      o->prefetch = 16;
      o->queue_limits = {{"paced", {.max_starts = 20, .per = 1s}}};  // one per 50 ms
    }
    dist::Consumer w1(sv1, tasks, o1), w2(sv2, tasks, o2);
    sv1.start();
    sv2.start();
    dist::Client client({.broker = redis.url()});
    std::vector<boost::json::array> args;
    for (int i = 0; i < 15; ++i) args.push_back({i});
    // Two task names share the queue's limit.
    auto as = client.send_many<int>("a", args, {.queue = "paced"});
    auto bs = client.send_many<int>("b", args, {.queue = "paced"});
    auto unpaced = client.send_many<int>("a", args);
    std::vector<std::int64_t> starts;
    for (auto* hs : {&as, &bs})
      for (int i = 0; i < 15; ++i) {
        CHECK((*hs)[i].get_for(patience) == i);  // none lost
        starts.push_back((*hs)[i].info().started_ms);
      }
    for (int i = 0; i < 15; ++i) CHECK(unpaced[i].get_for(patience) == i);
    std::sort(starts.begin(), starts.end());
    // 30 starts one per 50 ms, with the slack of a tenth of max_starts (2
    // intervals): 27 intervals at least, whatever the load.
    CHECK(starts.back() - starts.front() >= (30 - 1 - 2) * 50);
    CHECK(redis_call(redis, cmd("HGET", "atask:limits", "q:paced")).str == "20 1000 0");
    CHECK(redis_call(redis, cmd("HEXISTS", "atask:limits", "q:default")).integer == 0);
    CHECK(redis_call(redis, cmd("HEXISTS", "atask:limits", "t:a")).integer == 0);
  }

  TEST_CASE(
      "a queue's concurrency limit: at most K of its tasks run at once across workers - whatever their "
      "names") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::mutex m;
    std::condition_variable cv;
    int running = 0, most = 0;
    bool open_gate = false;
    auto gated = [&](int n) {
      std::unique_lock lk(m);
      most = std::max(most, ++running);
      cv.notify_all();
      cv.wait_for(lk, patience, [&] { return open_gate; });
      --running;
      return n;
    };
    tasks.add("tool_a", gated);
    tasks.add("tool_b", gated);
    tasks.add("free", [](int n) { return n; });
    atask::Supervisor sv1(options("s12a", 4)), sv2(options("s12b", 4));
    auto o1 = fast(redis, "ws12a"), o2 = fast(redis, "ws12b");
    for (auto* o : {&o1, &o2}) {
      o->queues = {"licensed", "default"};
      o->queue_limits = {{"licensed", {.max_running = 2}}};
    }
    dist::Consumer w1(sv1, tasks, o1), w2(sv2, tasks, o2);
    sv1.start();
    sv2.start();
    dist::Client client({.broker = redis.url()});
    std::vector<boost::json::array> args;
    for (int i = 0; i < 4; ++i) args.push_back({i});
    auto as = client.send_many<int>("tool_a", args, {.queue = "licensed"});
    auto bs = client.send_many<int>("tool_b", args, {.queue = "licensed"});
    {
      std::unique_lock lk(m);
      REQUIRE(cv.wait_for(lk, patience, [&] { return running == 2; }));
    }
    // Eight pool threads, two busy: six tasks wait in the queue's line...
    CHECK(eventually([&] { return redis_call(redis, cmd("LLEN", "atask:cc:w:q:licensed")).integer == 6; }));
    CHECK(redis_call(redis, cmd("SCARD", "atask:cc:q:licensed")).integer == 2);
    CHECK(redis_call(redis, cmd("HGET", "atask:limits", "q:licensed")).str == "0 0 2");
    // ... and another queue's task runs meanwhile.
    CHECK(client.send<int>("free", {5}).get_for(patience) == 5);
    {
      std::lock_guard lk(m);
      CHECK(running == 2);
      open_gate = true;
    }
    cv.notify_all();
    for (int i = 0; i < 4; ++i) {
      CHECK(as[i].get_for(patience) == i);
      CHECK(bs[i].get_for(patience) == i);
    }
    std::lock_guard lk(m);
    CHECK(most == 2);
    CHECK(redis_call(redis, cmd("EXISTS", "atask:cc:q:licensed")).integer == 0);  // every place given back
  }

  TEST_CASE(
      "a run stopped by its time limit is retried when on_time_limit is set - failed at once when not") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::atomic<int> runs{0};
    tasks.add("slow", [&]() -> int {
      ++runs;
      wait_until_stopped();
      throw atask::TaskCanceled("stopped");
    });
    atask::Supervisor sv(options("s13"));
    dist::Consumer worker(sv, tasks, fast(redis, "ws13"));
    sv.start();
    dist::Client client({.broker = redis.url()});

    // Retried: every attempt ends by its time limit, then the dead letters.
    auto retried = client.send<int>(
        "slow", {}, {.time_limit = 100ms, .retry = atask::RetryPolicy{.max_attempts = 3, .backoff = 10ms}});
    try {
      (void)retried.get_for(patience);
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::TimeoutError");
    }
    CHECK(retried.status() == dist::RemoteStatus::dead);
    CHECK(runs == 3);
    const auto tries = retried.attempts();
    REQUIRE(tries.size() == 3);
    for (auto& a : tries) CHECK(a.error_type == "atask::TimeoutError");

    // Not retried: the first time limit is the task's final failure.
    auto once = client.send<int>(
        "slow", {},
        {.time_limit = 100ms, .retry = atask::RetryPolicy{.max_attempts = 3, .on_time_limit = false}});
    try {
      (void)once.get_for(patience);
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::TimeoutError");
    }
    CHECK(once.status() == dist::RemoteStatus::failed);
    CHECK(once.attempt() == 1);
    CHECK(once.attempts().size() == 1);
    CHECK(runs == 4);
    // Only the first is a dead letter.
    auto letters = client.dead_letters("default");
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].task_id == retried.id());
  }

  TEST_CASE(
      "chains: each result is the next step's first argument - a failure breaks the rest - cancel stops "
      "all") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::atomic<int> never_runs{0};
    tasks.add("add", [](int a, int b) { return a + b; });
    tasks.add("mul", [](int a, int b) { return a * b; });
    tasks.add("fail", [](int) -> int { throw std::invalid_argument("no odd numbers"); });
    tasks.add("never", [&](int a) {
      ++never_runs;
      return a;
    });
    Event started;
    tasks.add("until_stopped", [&] {
      started.set();
      wait_until_stopped();
      throw atask::TaskCanceled("stopped");
      return 0;
    });
    atask::Supervisor sv(options("s8"));
    dist::Consumer worker(sv, tasks, fast(redis, "ws8"));
    sv.start();
    dist::Client client({.broker = redis.url()});

    auto h = client.chain<int>({{"add", {1, 2}}, {"add", {10}}, {"mul", {2}}});
    CHECK(h.get_for(patience) == 26);  // (1 + 2 + 10) * 2
    const std::string chain = h.id().substr(0, h.id().rfind(':'));
    CHECK(h.id() == chain + ":2");
    CHECK(client.handle<int>(chain + ":0").get_for(patience) == 3);
    CHECK(client.handle<int>(chain + ":1").get_for(patience) == 13);

    auto broken = client.chain<int>({{"add", {1, 2}}, {"fail", {}}, {"never", {}}});
    try {
      (void)broken.get_for(patience);
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::ChainBroken");
      CHECK(contains(e.message(), "step 1"));
      CHECK(contains(e.message(), "no odd numbers"));
    }
    CHECK(never_runs == 0);

    auto stopped = client.chain<int>({{"until_stopped", {}}, {"never", {}}, {"never", {}}});
    REQUIRE(started.wait_for());
    CHECK(stopped.cancel());
    CHECK_THROWS_AS((void)stopped.get_for(patience), atask::TaskCanceled);
    const std::string c3 = stopped.id().substr(0, stopped.id().rfind(':'));
    CHECK_THROWS_AS((void)client.handle<int>(c3 + ":0").get_for(patience), atask::TaskCanceled);
    CHECK(never_runs == 0);

    CHECK_THROWS_AS((void)client.chain({}), atask::OptionsError);
    CHECK_THROWS_AS((void)client.chain({{"add", {1, 2}, {.countdown = 1s}}}), atask::OptionsError);
  }

  TEST_CASE(
      "groups run in parallel and give their results in order - a chord's callback gets them all once") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    std::atomic<int> callbacks{0};
    tasks.add("square", [](int x) { return x * x; });
    tasks.add("fail", [](int) -> int { throw std::invalid_argument("no"); });
    tasks.add("sum", [&](std::vector<int> xs, int plus) {
      ++callbacks;
      int s = plus;
      for (int x : xs) s += x;
      return s;
    });
    atask::Supervisor sv1(options("s9a")), sv2(options("s9b"));
    dist::Consumer w1(sv1, tasks, fast(redis, "ws9a")), w2(sv2, tasks, fast(redis, "ws9b"));
    sv1.start();
    sv2.start();
    dist::Client client({.broker = redis.url()});

    std::vector<dist::ChainStep> squares;
    for (int i = 1; i <= 6; ++i) squares.push_back({"square", {i}});
    auto g = client.group<int>(squares);
    CHECK(g.wait_for(patience));
    CHECK(g.get() == std::vector<int>{1, 4, 9, 16, 25, 36});

    auto total = client.chord<int>(squares, {"sum", {1000}});
    CHECK(total.get_for(patience) == 1091);  // 1000 + 1 + 4 + ... + 36
    CHECK(callbacks == 1);
    CHECK(total.id().ends_with(":cb"));

    auto broken = client.chord<int>({{"square", {2}}, {"fail", {3}}}, {"sum", {0}});
    try {
      (void)broken.get_for(patience);
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::ChainBroken");
      CHECK(contains(e.message(), "member 1"));
    }
    CHECK(callbacks == 1);
    CHECK_THROWS_AS((void)client.group({}), atask::OptionsError);
  }

  TEST_CASE("a process task whose child crashes every time is retried, then dead-lettered with each crash") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("crashy", atask::process(&crash_in_child),
              {.retry = {.max_attempts = 3, .backoff = 10ms, .backoff_cap = 10ms}});
    tasks.add("fine", [](int x) { return x; });
    auto so = options("s10");
    so.processes.pool_size = 1;
    atask::Supervisor sv(so);
    dist::Consumer worker(sv, tasks, fast(redis, "ws10"));
    sv.start();
    dist::Client client({.broker = redis.url()});
    auto h = client.send<int>("crashy", {1});
    auto good = client.send<int>("fine", {7});
    try {
      (void)h.get_for(patience);
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::ChildCrashed");
    }
    CHECK(h.status() == dist::RemoteStatus::dead);
    CHECK(good.get_for(patience) == 7);  // the worker goes on
    auto letters = client.dead_letters("default");
    REQUIRE(letters.size() == 1);
    REQUIRE(letters[0].attempts.size() == 3);
    for (auto& a : letters[0].attempts) CHECK(a.error_type == "atask::ChildCrashed");

    // Crashes not retried: failed at the first one.
    auto once = client.send<int>("crashy", {1},
                                 {.retry = atask::RetryPolicy{.max_attempts = 3, .on_child_crash = false}});
    CHECK_THROWS_AS((void)once.get_for(patience), dist::RemoteError);
    CHECK(once.status() == dist::RemoteStatus::failed);
    CHECK(once.attempts().size() == 1);
  }

  TEST_CASE("retry policies: the delays they give and the errors they take - bad ones are refused") {
    atask::RetryPolicy exp{.max_attempts = 10, .backoff = 100ms, .backoff_cap = 1000ms, .jitter = false};
    CHECK(exp.delay_before(1, 0.5) == 100ms);
    CHECK(exp.delay_before(2, 0.5) == 200ms);
    CHECK(exp.delay_before(4, 0.5) == 800ms);
    CHECK(exp.delay_before(5, 0.5) == 1000ms);  // capped
    CHECK(exp.delay_before(500, 0.5) == 1000ms);
    exp.jitter = true;  // full jitter: uniform in [0, the exponential delay]
    CHECK(exp.delay_before(3, 0.0) == 0ms);
    CHECK(exp.delay_before(3, 0.5) == 200ms);
    CHECK(exp.delay_before(3, 0.999) <= 400ms);
    atask::RetryPolicy list{.max_attempts = 5, .delays = {1s, 5s}};
    CHECK(list.delay_before(1, 0.3) == 1s);
    CHECK(list.delay_before(2, 0.3) == 5s);
    CHECK(list.delay_before(3, 0.3) == 5s);  // the last one repeats

    atask::RetryPolicy some{.on = {"my::Transient"}, .on_time_limit = false};
    CHECK(some.retries("my::Transient"));
    CHECK_FALSE(some.retries("std::runtime_error"));
    CHECK_FALSE(some.retries("atask::TimeoutError"));
    CHECK(some.retries("atask::ChildCrashed"));
    CHECK_FALSE(atask::RetryPolicy{}.retries("atask::TaskCanceled"));

    CHECK_THROWS_AS(atask::RetryPolicy{.max_attempts = 0}.check("here"), atask::OptionsError);
    CHECK_THROWS_AS((atask::RetryPolicy{.backoff = 10s, .backoff_cap = 1s}.check("here")),
                    atask::OptionsError);
    atask::TaskRegistry tasks;
    CHECK_THROWS_AS(tasks.add("x", [] {}, {.retry = {.max_attempts = 0}}), atask::OptionsError);
    dist::Client client({.broker = "redis://127.0.0.1:1"});
    CHECK_THROWS_AS((void)client.send("x", {}, {.retry = atask::RetryPolicy{.max_attempts = 0}}),
                    atask::OptionsError);
  }
}
