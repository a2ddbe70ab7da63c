// Issue 11: "Memory and keys stay flat: a million tasks through the system
// leave no stream entries, pending entries or result keys behind past their
// time-to-live (a test counts the keys)". The big brother of the doctest case
// "keys stay flat: 2,000 tasks ..." (test_distributed.cpp), as a program of
// its own: it runs for over a minute, so it is one CTest test with a long
// timeout, built only without sanitizers.
//
// One redis-server of its own, one Supervisor (2 pool threads) with one
// Consumer, one Client in the same process. The client sends 1,000,000 "add"
// tasks in batches of 1,000 with send_many and keeps at most `window` batches
// outstanding: it waits on the oldest batch's handles (checking every result)
// before it sends the next, so it never holds more than 8,000 handles.
// Then it checks that Redis holds nothing of them: every priority stream and
// its pending list empty, no dead letter, and, once the results' 2 s TTL has
// passed, only the fixed keys a live worker keeps. Redis's used_memory at the
// end is compared with a sample taken after the first 100,000 tasks and with
// the one taken before the first task.
//
// Exit code 0: passed. Otherwise the reason is on stderr.
// ATASK_TEST_LOG=1 shows the supervisor's and consumer's logs.

// The support headers (RedisServer, options()) include doctest; this program
// has no doctest runner, so its macros and registrations compile to nothing.
#define DOCTEST_CONFIG_DISABLE

#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/supervisor.hpp>
#include <atask/tasks/registry.hpp>

#include "distributed/redis/connection.hpp"

#include "fixtures.hpp"
#include "redis_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <future>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace dist = atask::distributed;
using atask::redis::cmd;
using atask::redis::Connection;
using atask::redis::Reply;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t total = 1'000'000;
constexpr std::size_t batch = 1'000;
constexpr std::size_t window = 8;                 // batches sent and not yet waited on, at most
constexpr std::size_t early_sample_at = 100'000;  // tasks done when Redis's memory is first sampled
constexpr auto result_ttl = 2s;
const std::string worker_name = "million";
const std::string queue_prefix = "atask:{default}:";
const std::vector<std::string> priorities{"low", "normal", "high", "critical"};

// A failed check. Thrown, not std::exit(): the supervisor, the consumer and
// the redis-server must still be stopped on the way out.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void require(bool ok, const std::string& why) {
  if (!ok) throw Failure(why);
}

// Commands on a connection of their own. (tests/support/redis_calls.hpp does
// the same with doctest's REQUIRE, which needs a doctest test case around it.)
std::vector<Reply> redis_calls(const test::RedisServer& r, std::vector<Connection::Command> cs) {
  asio::io_context ctx;
  auto fut = asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<std::vector<Reply>> {
        auto c = co_await Connection::connect(ctx.get_executor(), atask::redis::parse_url(r.url()));
        co_return co_await c->pipeline(cs);
      },
      asio::use_future);
  ctx.run_for(test::patience);
  require(fut.wait_for(0s) == std::future_status::ready,
          "redis-server did not answer " + cs.front().front() + " within 10 s");
  auto replies = fut.get();
  for (std::size_t i = 0; i < replies.size(); ++i)
    require(!replies[i].is_error(), cs[i].front() + " failed: " + replies[i].describe());
  return replies;
}

Reply redis_call(const test::RedisServer& r, Connection::Command c) {
  std::vector<Connection::Command> one;
  one.push_back(std::move(c));
  return redis_calls(r, std::move(one)).front();
}

// used_memory from INFO memory: what Redis's allocator holds for data,
// buffers and structures (not the RSS, so fragmentation does not count).
long long used_memory(const test::RedisServer& r) {
  const std::string info = redis_call(r, cmd("INFO", "memory")).str;
  const std::string field = "used_memory:";
  const auto at = info.find(field);
  require(at != std::string::npos, "INFO memory has no used_memory field");
  return std::stoll(info.substr(at + field.size()));
}

// This process's resident set (client, consumer, supervisor), in bytes.
long long rss_bytes() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

std::string mib(long long bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string keys_of(const std::vector<std::string>& ks, std::size_t limit = 20) {
  std::string out;
  for (std::size_t i = 0; i < ks.size() && i < limit; ++i) out += (i ? ", " : "") + ks[i];
  if (ks.size() > limit) out += ", ... (" + std::to_string(ks.size()) + " in all)";
  return out;
}

int run() {
  test::RedisServer redis;
  atask::TaskRegistry tasks;
  tasks.add("add", [](int a, int b) { return a + b; });
  auto o = test::options("million", 2);
  if (std::getenv("ATASK_TEST_LOG")) {
    o.logger = spdlog::default_logger();
    o.logger->set_level(spdlog::level::debug);
  }
  atask::Supervisor sv(o);
  dist::Consumer worker(sv, tasks, {.broker = redis.url(), .prefetch = 64, .name = worker_name});
  sv.start();
  dist::Client client({.broker = redis.url()});
  const long long memory_at_start = used_memory(redis);

  // a = the task's number, b = a % 7: every result is different and checked.
  const auto expected = [](std::size_t n) { return static_cast<int>(n + n % 7); };
  struct Batch {
    std::size_t first;
    std::vector<dist::RemoteHandle<int>> handles;
  };
  std::deque<Batch> outstanding;
  std::size_t done = 0;
  long long memory_early = -1, rss_early = -1;

  const auto wait_oldest = [&] {
    Batch& b = outstanding.front();
    for (std::size_t i = 0; i < b.handles.size(); ++i) {
      const std::size_t n = b.first + i;
      int got = 0;
      try {
        // Generous: a loaded 2-core machine may stall, a lost task never ends.
        got = b.handles[i].get_for(60s);
      } catch (const std::exception& e) {
        throw Failure("task #" + std::to_string(n) + " (" + b.handles[i].id() + "): " + e.what());
      }
      require(got == expected(n), "task #" + std::to_string(n) + " returned " + std::to_string(got) +
                                      ", expected " + std::to_string(expected(n)));
    }
    done += b.handles.size();
    outstanding.pop_front();
    if (memory_early < 0 && done >= early_sample_at) {
      memory_early = used_memory(redis);
      rss_early = rss_bytes();
    }
  };

  const auto started = std::chrono::steady_clock::now();
  const dist::SendOptions send_options{.result_ttl = result_ttl};
  for (std::size_t first = 0; first < total; first += batch) {
    if (outstanding.size() == window) wait_oldest();
    std::vector<boost::json::array> args;
    args.reserve(batch);
    for (std::size_t n = first; n < first + batch; ++n)
      args.push_back({static_cast<int>(n), static_cast<int>(n % 7)});
    outstanding.push_back({first, client.send_many<int>("add", std::move(args), send_options)});
  }
  while (!outstanding.empty()) wait_oldest();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  require(done == total, "waited on " + std::to_string(done) + " tasks, sent " + std::to_string(total));

  // The consumer counts an outcome once Redis has stored it; the client may
  // see the outcome a moment before the counter moves.
  (void)test::eventually([&] { return worker.info().succeeded >= total; });
  const auto wi = worker.info();
  // received == total: no task was delivered twice (no redelivery, no reap).
  require(wi.received == total && wi.succeeded == total && wi.failed == 0 && wi.canceled == 0 &&
              wi.dead_lettered == 0 && wi.stale == 0 && wi.reaped == 0 && wi.in_flight == 0,
          "consumer counters: received " + std::to_string(wi.received) + ", succeeded " +
              std::to_string(wi.succeeded) + ", failed " + std::to_string(wi.failed) + ", canceled " +
              std::to_string(wi.canceled) + ", dead-lettered " + std::to_string(wi.dead_lettered) +
              ", stale " + std::to_string(wi.stale) + ", reaped " + std::to_string(wi.reaped) +
              ", in flight " + std::to_string(wi.in_flight) +
              "; expected received = succeeded = " + std::to_string(total) + " and the rest 0");

  // No stream entry and no pending entry is left: completion acknowledges
  // and deletes each entry in the same step that stores the outcome.
  for (const auto& p : priorities) {
    const std::string key = queue_prefix + p;
    const auto r = redis_calls(redis, {cmd("XLEN", key), cmd("XPENDING", key, "w")});
    require(r[0].integer == 0, key + ": XLEN is " + std::to_string(r[0].integer) + ", expected 0");
    require(!r[1].elements.empty() && r[1].elements[0].integer == 0,
            key + ": XPENDING on group w is " + r[1].describe() + ", expected 0 entries");
  }
  const std::string dead = queue_prefix + "dead";
  const auto dead_len = redis_call(redis, cmd("XLEN", dead)).integer;
  require(dead_len == 0, dead + " holds " + std::to_string(dead_len) + " dead letters, expected none");

  // What a live worker legitimately keeps: the four streams with their
  // consumer group (created at start, stay when empty), the worker's
  // heartbeat entry and its hash, its inbox (a stream of the tasks handed to
  // it, empty once read), and the set of queue names (one member per queue).
  // The reaper's lock lives 0.9 x reap_every and comes back with every
  // sweep, so it may or may not be there; the set of workers waiting idle on
  // the queue is there while the worker waits.
  std::set<std::string> fixed{"atask:workers", "atask:w:" + worker_name, "atask:in:" + worker_name,
                              "atask:queues"};
  for (const auto& p : priorities) fixed.insert(queue_prefix + p);
  const std::set<std::string> optional{"atask:reaper", queue_prefix + "idle"};

  // Results expire result_ttl after the end; Redis expires lazily and by
  // sampling (hz 10), so poll, with a deadline. (Waiting for time to pass
  // is what this is about: there is no event to wait on.)
  const auto ttl_deadline = std::chrono::steady_clock::now() + 60s;
  long long dbsize = 0;
  for (;;) {
    dbsize = redis_call(redis, cmd("DBSIZE")).integer;
    if (dbsize <= static_cast<long long>(fixed.size() + optional.size()) ||
        std::chrono::steady_clock::now() >= ttl_deadline)
      break;
    std::this_thread::sleep_for(100ms);
  }
  std::vector<std::string> unexpected, keys;
  for (const auto& k : redis_call(redis, cmd("KEYS", "*")).elements) {
    keys.push_back(k.str);
    if (!fixed.count(k.str) && !optional.count(k.str)) unexpected.push_back(k.str);
  }
  std::sort(unexpected.begin(), unexpected.end());
  std::sort(keys.begin(), keys.end());
  require(unexpected.empty(), std::to_string(unexpected.size()) +
                                  " unexpected key(s) 60 s after the last task: " + keys_of(unexpected));
  for (const auto& k : fixed)
    require(std::find(keys.begin(), keys.end(), k) != keys.end(), "key " + k + " is missing");

  // Memory stays flat. The early sample (after 100,000 tasks) holds what a
  // steady flow needs: the result hashes of the last result_ttl (some 20,000
  // at this rate, about 20 MiB), client buffers, the streams' nodes. At the
  // end, with every result expired, Redis must hold less than that if nothing
  // leaks: the bound, twice the early sample plus 4 MiB, is the issue's
  // "flat", with room for allocator slack. Since the early sample is mostly
  // the TTL window, it is loose; the sharper check is against the start
  // (0.9 MiB before the first task, 1.7 MiB after the last when measured; the
  // difference is the main and expires tables, grown for the TTL window and
  // not shrunk yet): 8 MiB over a million tasks is 8 bytes a task, so a leak
  // of one small allocation per task fails it.
  const long long memory_end = used_memory(redis);
  const long long rss_end = rss_bytes();
  const long long bound = 2 * memory_early + 4 * 1024 * 1024;
  require(memory_end <= bound, "Redis used_memory grew: " + mib(memory_early) + " after " +
                                   std::to_string(early_sample_at) + " tasks, " + mib(memory_end) +
                                   " at the end (bound " + mib(bound) + ")");
  const long long start_bound = memory_at_start + 8 * 1024 * 1024;
  require(memory_end <= start_bound, "Redis used_memory grew: " + mib(memory_at_start) +
                                         " before the first task, " + mib(memory_end) +
                                         " after the last one's TTL (bound " + mib(start_bound) + ")");

  std::printf(
      "million_tasks: %zu tasks in %.1f s (%.0f tasks/s), %lld keys left (%s), Redis used_memory %s at "
      "start, %s after %zu tasks, %s at the end; this process's RSS %s after %zu tasks, %s at the end\n",
      total, seconds, static_cast<double>(total) / seconds, dbsize, keys_of(keys).c_str(),
      mib(memory_at_start).c_str(), mib(memory_early).c_str(), early_sample_at, mib(memory_end).c_str(),
      mib(rss_early).c_str(), early_sample_at, mib(rss_end).c_str());
  return 0;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& e) {
    std::cerr << "million_tasks: FAILED: " << e.what() << "\n";
    return 1;
  }
}
