// Delivery guarantees with real worker processes (atask_test_worker, forked
// and exec'd) killed with SIGKILL at the moments that lose work in other
// systems: just after the fetch, mid-task in a pool thread, mid-task in a
// forked child, just after the result was written; plus a CPU-bound task far
// longer than the dead-worker threshold, and a poison task.
//
// The workers run with heartbeat 200 ms and dead_after 1 s so that the
// suite stays quick; the default 1 s / 5 s timings are measured by
// benchmarks/bench_distributed.
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/tasks/registry.hpp>

#include "distributed/redis/connection.hpp"

#include <doctest/doctest.h>

#include "fixtures.hpp"
#include "redis_calls.hpp"
#include "redis_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <map>
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

// One atask_test_worker process; SIGKILLed (and reaped) at scope exit if
// still there.
class WorkerProcess {
 public:
  WorkerProcess(const RedisServer& redis, std::string name, const TempDir& dir,
                std::vector<std::string> extra = {})
      : name_(std::move(name)) {
    std::vector<std::string> args{ATASK_TEST_WORKER, redis.url(), name_,          dir.path().string(),
                                  "--heartbeat",     "200",       "--dead-after", "1000"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = (dir.path() / (name_ + ".log")).string();
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    // Up once it has registered (state in Redis: polled, bounded); a beat
    // process once some beat leads.
    // A worker may die as soon as it has registered (a poison task waits
    // for it): what counts is that it registered first.
    const bool beat = std::find(extra.begin(), extra.end(), "--beat") != extra.end();
    bool up = false;
    REQUIRE_MESSAGE(eventually([&] {
                      up = up || !redis_call(redis, beat ? cmd("GET", "atask:beat:leader")
                                                         : cmd("ZSCORE", "atask:workers", name_))
                                      .is_nil();
                      return up || exited();
                    }),
                    "worker " << name_ << " did not register");
    REQUIRE_MESSAGE(up, "worker " << name_ << " exited before it registered; see " << log);
  }
  ~WorkerProcess() { kill(); }

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // True once the process has ended (reaped here).
  bool exited() {
    if (pid_ <= 0) return true;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }
  const std::string& name() const { return name_; }
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }

 private:
  std::string name_;
  pid_t pid_ = -1;
};

// Lines of <dir>/marks, counted.
std::map<std::string, int> marks(const TempDir& dir) {
  std::map<std::string, int> m;
  std::ifstream f(dir.path() / "marks");
  for (std::string l; std::getline(f, l);) {
    if (l.rfind("start ", 0) == 0 && l.find(" pid ") != std::string::npos) l = l.substr(0, l.find(" pid "));
    ++m[l];
  }
  return m;
}

bool has_mark(const TempDir& dir, const std::string& line) {
  return marks(dir).count(line) > 0;
}

}  // namespace

TEST_SUITE("distributed kill") {
  TEST_CASE("SIGKILL mid-task in a pool thread: another worker runs the task again, to completion once") {
    RedisServer redis;
    TempDir dir;
    dist::Client client({.broker = redis.url()});
    WorkerProcess a(redis, "ka", dir);
    auto h = client.send<std::string>("hold", {"t1", 1500});
    REQUIRE(eventually([&] { return has_mark(dir, "start t1"); }));
    a.kill();
    const auto killed = std::chrono::steady_clock::now();
    WorkerProcess b(redis, "kb", dir);
    CHECK(h.get_for(patience) == "t1");
    MESSAGE("recovered " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - killed)
                                .count()
                         << " ms after the kill (dead_after 1000 ms, task 1500 ms)");
    const auto m = marks(dir);
    CHECK(m.at("start t1") == 2);
    CHECK(m.at("end t1") == 1);
    CHECK(h.attempt() == 2);
    CHECK(h.worker() == "kb");
    // The lost run is in the task's history.
    const auto tries = h.attempts();
    REQUIRE(tries.size() == 1);
    CHECK(tries[0].attempt == 1);
    CHECK(tries[0].error_type == "atask::WorkerLost");
    CHECK(tries[0].worker == "ka");
  }

  TEST_CASE(
      "SIGKILL just after the fetch: tasks taken but not started are run by another worker, each once") {
    RedisServer redis;
    TempDir dir;
    dist::Client client({.broker = redis.url()});
    WorkerProcess a(redis, "fa", dir, {"--threads", "1", "--prefetch", "4"});
    auto first = client.send<std::string>("hold", {"f0", 1000});
    REQUIRE(eventually([&] { return has_mark(dir, "start f0"); }));
    // One pool thread, busy: these three are fetched (prefetch 4) and wait.
    std::vector<dist::RemoteHandle<std::string>> waiting;
    for (const char* t : {"f1", "f2", "f3"}) waiting.push_back(client.send<std::string>("mark", {t}));
    REQUIRE(eventually([&] {
      return redis_call(redis, cmd("XPENDING", "atask:{default}:normal", "w")).elements[0].integer == 4;
    }));
    a.kill();
    WorkerProcess b(redis, "fb", dir);
    CHECK(first.get_for(patience) == "f0");
    for (auto& h : waiting) CHECK(h.wait_for(patience));
    const auto m = marks(dir);
    CHECK(m.at("end f0") == 1);
    for (const char* t : {"f1", "f2", "f3"}) CHECK(m.at(std::string("run ") + t) == 1);
  }

  TEST_CASE("SIGKILL mid-task in a forked child: the child dies too, and another worker runs the task once") {
    RedisServer redis;
    TempDir dir;
    dist::Client client({.broker = redis.url()});
    WorkerProcess a(redis, "ca", dir, {"--processes", "1"});
    auto h = client.send<std::string>("hold_child", {"c1", 1500});
    REQUIRE(eventually([&] { return has_mark(dir, "start c1"); }));
    a.kill();
    WorkerProcess b(redis, "cb", dir, {"--processes", "1"});
    CHECK(h.get_for(patience) == "c1");
    const auto m = marks(dir);
    CHECK(m.at("start c1") == 2);
    CHECK(m.at("end c1") == 1);  // A's child did not finish it: it died with its worker
  }

  TEST_CASE("SIGKILL just after the result was stored: the task is not run again") {
    RedisServer redis;
    TempDir dir;
    dist::Client client({.broker = redis.url()});
    WorkerProcess a(redis, "ra", dir);
    auto h = client.send<std::string>("mark", {"r1"});
    CHECK(h.get_for(patience) == "r1");
    a.kill();
    WorkerProcess b(redis, "rb", dir);
    // B's reaper forgets A once A's heartbeat is older than dead_after.
    REQUIRE(eventually([&] { return redis_call(redis, cmd("ZSCORE", "atask:workers", "ra")).is_nil(); }));
    CHECK(client.send<std::string>("mark", {"r2"}).get_for(patience) == "r2");
    const auto m = marks(dir);
    CHECK(m.at("run r1") == 1);
    CHECK(h.attempt() == 1);
  }

  TEST_CASE("a CPU-bound task running 5x the dead-worker threshold runs exactly once") {
    RedisServer redis;
    TempDir dir;
    dist::Client client({.broker = redis.url()});
    WorkerProcess a(redis, "sa", dir, {"--threads", "2"});
    WorkerProcess b(redis, "sb", dir);  // a reaper that would take the task if A looked dead
    auto h = client.send<std::string>("spin", {"s1", 5000});
    CHECK(h.get_for(20s) == "s1");
    CHECK(h.attempt() == 1);
    CHECK(marks(dir).at("end s1") == 1);
  }

  TEST_CASE(
      "a poison task that kills its worker every time is dead-lettered after max_deliveries - good tasks "
      "flow") {
    RedisServer redis;
    TempDir dir;
    dist::Client client({.broker = redis.url()});
    auto poison = client.send("crash", {}, {.max_deliveries = 2});
    std::vector<dist::RemoteHandle<std::string>> good;
    for (int i = 0; i < 10; ++i) good.push_back(client.send<std::string>("mark", {"g" + std::to_string(i)}));
    // Keep one worker alive: each one the poison kills is replaced.
    std::vector<std::unique_ptr<WorkerProcess>> workers;
    int started = 0;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!poison.done() && std::chrono::steady_clock::now() < deadline) {
      if (workers.empty() || workers.back()->exited())
        workers.push_back(std::make_unique<WorkerProcess>(redis, "p" + std::to_string(++started), dir));
      poison.wait_for(100ms);
    }
    REQUIRE(poison.done());
    CHECK(poison.status() == dist::RemoteStatus::dead);
    try {
      (void)poison.get();
      FAIL("no error");
    } catch (const dist::RemoteError& e) {
      CHECK(e.type() == "atask::DeliveryLimit");
      CHECK(contains(e.message(), "delivered 2 times"));
    }
    CHECK(started == 3);  // two died, the third dead-lettered it
    for (auto& h : good) CHECK(h.wait_for(patience));
    const auto dead = client.dead_letters("default");
    REQUIRE(dead.size() == 1);
    CHECK(dead[0].task_id == poison.id());
    CHECK(dead[0].name == "crash");
  }

  TEST_CASE(
      "a rate limit holds across 4 worker processes: 2,000 tasks at 50/s, no 1 s window over it by 10%") {
    RedisServer redis;
    TempDir dir;
    std::vector<std::unique_ptr<WorkerProcess>> workers;
    for (int i = 0; i < 4; ++i)
      workers.push_back(std::make_unique<WorkerProcess>(redis, "rl" + std::to_string(i), dir,
                                                        std::vector<std::string>{"--prefetch", "16"}));
    dist::Client client({.broker = redis.url()});
    std::vector<boost::json::array> args;
    for (int i = 0; i < 2000; ++i) args.push_back({i});
    auto hs = client.send_many<std::vector<std::int64_t>>("limited", args);
    // When each started: by Redis's clock (set where the limiter let it in,
    // the clock the limit is kept by), and by the machine's monotonic clock
    // (read by the task itself).
    std::vector<std::int64_t> starts, ran;
    for (int i = 0; i < 2000; ++i) {
      const auto r = hs[i].get_for(std::chrono::seconds(90));
      REQUIRE(r.size() == 2);
      REQUIRE(r[0] == i);  // none lost
      ran.push_back(r[1]);
      starts.push_back(hs[i].info().started_ms);
    }
    std::sort(starts.begin(), starts.end());
    std::sort(ran.begin(), ran.end());
    const auto in_window = [&](std::int64_t from) {
      return std::lower_bound(starts.begin(), starts.end(), from + 1000) -
             std::lower_bound(starts.begin(), starts.end(), from);
    };
    long most = 0, least = 2000;
    for (std::int64_t t = starts.front(); t + 1000 <= starts.back(); t += 10) {
      most = std::max<long>(most, in_window(t));
      least = std::min<long>(least, in_window(t));
    }
    std::int64_t gap = 0, gap_at = 0;  // the longest time without a start, and where
    for (std::size_t i = 1; i < starts.size(); ++i)
      if (starts[i] - starts[i - 1] > gap)
        gap = starts[i] - starts[i - 1], gap_at = starts[i - 1] - starts.front();
    MESSAGE("2,000 starts over " << (starts.back() - starts.front()) << " ms by Redis's clock, "
                                 << (ran.back() - ran.front())
                                 << " ms by the monotonic clock; per 1 s window: " << least << " to " << most
                                 << "; longest time without a start: " << gap << " ms, from " << gap_at
                                 << " ms");
    // The limit: no 1 s window over it by more than its tenth of slack.
    CHECK(most <= 55);
    // And it is used: 2,000 starts at 50/s take 40 s, here at most 44. (Not
    // per window: a worker process the machine holds back for a few hundred
    // ms, beside a browser test, leaves one window short, once in a while.)
    // Timed by the monotonic clock: Redis's is the wall clock, and a step of
    // it (a virtual machine paused and set right, seen once in CI: 8.9 s
    // without a start by Redis's clock, the whole test 44.6 s) is time the
    // limiter counts as passed but no worker had.
    CHECK(ran.back() - ran.front() <= 44'000);
  }

  TEST_CASE(
      "two beat processes: the leader frozen (SIGSTOP) past its lease and resumed sends no tick twice") {
    RedisServer redis;
    TempDir dir;
    atask::TaskRegistry tasks;
    std::atomic<int> runs{0};
    tasks.add("mark", [&](std::string) {
      ++runs;
      return std::string();
    });
    atask::Supervisor sv(options("bk-worker"));
    dist::Consumer worker(
        sv, tasks,
        {.broker = redis.url(), .name = "bk-w", .heartbeat = 100ms, .dead_after = 1000ms, .block = 200ms});
    sv.start();
    WorkerProcess a(redis, "beat-a", dir, {"--beat", "1000"});
    WorkerProcess b(redis, "beat-b", dir, {"--beat", "1000"});
    REQUIRE(eventually([&] { return runs >= 5; }));
    const std::string leader = redis_call(redis, cmd("GET", "atask:beat:leader")).str;
    REQUIRE((leader == "beat-a" || leader == "beat-b"));
    auto& frozen = leader == "beat-a" ? a : b;
    const std::string other = leader == "beat-a" ? "beat-b" : "beat-a";
    frozen.signal(SIGSTOP);
    // Past its lease the other beat leads, and the ticks go on.
    REQUIRE(eventually([&] { return redis_call(redis, cmd("GET", "atask:beat:leader")).str == other; }));
    const int at_takeover = runs;
    REQUIRE(eventually([&] { return runs >= at_takeover + 5; }));
    frozen.signal(SIGCONT);  // it wakes up thinking it leads, with ticks it thinks are due
    const int at_resume = runs;
    REQUIRE(eventually([&] { return runs >= at_resume + 5; }));
    CHECK(redis_call(redis, cmd("GET", "atask:beat:leader")).str == other);
    a.kill();
    b.kill();
    // Every tick sent once: as many runs as distinct ticks in Redis.
    CHECK(eventually([&] {
      return runs == static_cast<int>(redis_call(redis, cmd("KEYS", "atask:t:beat:pulse:*")).elements.size());
    }));
    sv.stop();
  }

  TEST_CASE(
      "a chain through a worker kill resumes at the step that was running - no finished step runs again") {
    RedisServer redis;
    TempDir dir;
    dist::Client client({.broker = redis.url()});
    WorkerProcess a(redis, "ca", dir);
    auto h = client.chain<std::string>(
        {{"append", {"", "x", 10}}, {"append", {"y", 1500}}, {"append", {"z", 10}}});
    REQUIRE(eventually([&] { return has_mark(dir, "start y"); }));
    a.kill();  // mid-step 1
    WorkerProcess b(redis, "cb", dir);
    CHECK(h.get_for(patience) == "xyz");
    const auto m = marks(dir);
    CHECK(m.at("start x") == 1);  // step 0 finished before the kill: not run again
    CHECK(m.at("end x") == 1);
    CHECK(m.at("start y") == 2);  // step 1 ran again on the new worker
    CHECK(m.at("end y") == 1);
    CHECK(m.at("start z") == 1);
  }
}
