// Distributed-mode benchmarks (issue 11): atask's Client and Consumer through
// one redis-server, measured the same way as the Celery and BullMQ harnesses
// in benchmarks/peers/ (scripts/bench_distributed.sh runs all three against
// the same server and prints the ratios).
//
//  a. throughput: N trivial tasks ("noop", int -> int) from one client,
//     sent with send_many() in batches, then every result waited for; one
//     worker process with 2 pool threads and prefetch 50 (as many tasks in
//     flight as BullMQ's worker at concurrency 50). Time = first send -> last
//     result. Median of the runs. Also shown: the CPU time per task of
//     redis-server, the worker and the client (/proc/<pid>/stat), Redis
//     commands per task (INFO commandstats, Lua's inner calls included), and
//     the same throughput with the consumer's default prefetch (0 = four
//     times the pool: 8).
//  b. round trip: send<int>("noop", {i}).get(), one at a time, after a
//     warm-up, on an idle worker: p50 / p90 / p99; next to the floor, a raw
//     PING to the same server over a blocking socket.
//  d. delayed-task lateness (issue 12): D tasks "late_us"(due), sent one
//     at a time to the idle worker of a and b, each with its own eta =
//     the client's clock just before its send + a countdown spread over
//     200-2,000 ms (countdown_i = 200 + (i * 7919) % 1801 ms, the same
//     spread as the BullMQ peer). The task returns when it started on the
//     worker minus its due time (system_clock of the same machine, us);
//     next to it, the same lateness from Redis's side (info(): started_ms
//     - due_ms, server ms, so rounded to the ms).
//  e. throughput with retries on (issue 12): a, with every send carrying a
//     RetryPolicy{.max_attempts = 3}; the tasks succeed, so this measures
//     the bookkeeping of a retryable task, not retries. Its runs alternate
//     with a's plain runs on the same worker; reported as the ratio of the
//     medians (retry / plain), and its Redis commands per task.
//  c. recovery after SIGKILL: worker A (fork + exec of this program, its own
//     process group) takes R "sleep_ms" tasks (a coroutine that sleeps, so
//     all R run at once with prefetch R); once all R have started on A,
//     300 ms later, A is killed with SIGKILL and worker B is started at once.
//     Measured from the kill: until every task has started again on B, and
//     until the client has every result. Each run of a task appends
//     "start|end <tag> <pid> <unix ms>" to a file; duplicates are tasks
//     that completed more than once.
//
// Prints a table, then one JSON object on the last line. Targets are
// printed, never asserted.
//
// Usage:
//   bench_distributed client --broker URL [--quick] [--tasks N] [--batch N] [--runs N] [--rtt N]
//                           [--threads N] [--prefetch N] [--recovery-tasks N] [--sleep-ms N]
//                           [--bound-s N] [--workdir DIR] [--no-recovery] [--redis-pid PID]
//                           [--delayed N] [--retry-attempts N]
//       (--redis-pid: the local redis-server's pid, for its CPU time per task)
//   bench_distributed worker --broker URL [--threads 2] [--prefetch N] [--name NAME] [--log FILE]
//       (runs until SIGTERM / SIGINT; registers "noop"(int) -> int,
//        "sleep_ms"(ms, tag) -> tag and "late_us"(due unix ms) -> start - due in us)

#include "support.hpp"

#include <atask/atask.hpp>
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/tasks/registry.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace bench;
using namespace std::chrono_literals;
namespace dist = atask::distributed;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "bench_distributed: %s\n", why.c_str());
  std::exit(2);
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t unix_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// CPU time (user + system) a process has used so far, in seconds; -1 when
// it cannot be read (gone, or not on this machine).
double cpu_s(pid_t pid) {
  if (pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = all.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(all.substr(close + 2));  // from field 3 (state) on
  std::string field;
  unsigned long long ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) ut = std::stoull(field);
    if (i == 15) st = std::stoull(field);
  }
  return static_cast<double>(ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// CPU used by the three processes of a throughput run.
struct Cpu {
  double redis = 0, worker = 0, client = 0;
};

Cpu cpu_now(pid_t redis, pid_t worker) {
  return {cpu_s(redis), cpu_s(worker), cpu_s(::getpid())};
}

// -- options ------------------------------------------------------------------------------------
struct Args {
  std::map<std::string, std::string> kv;
  std::set<std::string> flags;
  std::string get(const std::string& k, const std::string& d) const {
    auto it = kv.find(k);
    return it == kv.end() ? d : it->second;
  }
  long num(const std::string& k, long d) const {
    auto it = kv.find(k);
    if (it == kv.end()) return d;
    char* end = nullptr;
    const long v = std::strtol(it->second.c_str(), &end, 10);
    if (!end || *end) die("--" + k + " wants a number, not '" + it->second + "'");
    return v;
  }
  bool has(const std::string& f) const { return flags.count(f) > 0; }
};

Args parse(int argc, char** argv, int from, const std::set<std::string>& flag_names) {
  Args a;
  for (int i = from; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) != 0) die("unexpected argument '" + s + "'");
    s = s.substr(2);
    if (flag_names.count(s)) {
      a.flags.insert(s);
    } else {
      if (i + 1 >= argc) die("--" + s + " wants a value");
      a.kv[s] = argv[++i];
    }
  }
  return a;
}

// -- the worker process ---------------------------------------------------------------------------
int log_fd = -1;

void note(const char* what, int tag) {
  if (log_fd < 0) return;
  char line[96];
  const int n = std::snprintf(line, sizeof line, "%s %d %d %lld\n", what, tag, static_cast<int>(::getpid()),
                              static_cast<long long>(unix_ms()));
  // O_APPEND: one write() per line, so lines of two workers never interleave.
  if (n > 0) (void)!::write(log_fd, line, static_cast<std::size_t>(n));
}

int run_worker(const Args& a) {
  const std::string broker = a.get("broker", "redis://127.0.0.1:6379");
  const int threads = static_cast<int>(a.num("threads", 2));
  const auto prefetch = static_cast<std::size_t>(a.num("prefetch", 0));
  const std::string log = a.get("log", "");
  if (!log.empty()) {
    log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) die("cannot open " + log + ": " + std::strerror(errno));
  }
  atask::TaskRegistry tasks;
  tasks.add("noop", [](int x) { return x; });
  // d: how late it started, against the due time the client gave it (Unix
  // ms, the same machine's clock). A pool-thread task, as noop.
  tasks.add("late_us", [](std::int64_t due_ms) { return unix_us() - due_ms * 1000; });
  // A coroutine: many sleep at once on the aloop, as BullMQ's async jobs do
  // at its concurrency; a pool thread is not held while it sleeps.
  tasks.add("sleep_ms", [](int ms, int tag) -> asio::awaitable<int> {
    note("start", tag);
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    co_await t.async_wait(asio::use_awaitable);
    note("end", tag);
    co_return tag;
  });
  atask::Supervisor sv({.id = "bw", .pool_size = threads, .handle_signals = true});
  dist::Consumer worker(
      sv, tasks, {.broker = broker, .queues = {"default"}, .prefetch = prefetch, .name = a.get("name", "")});
  sv.start();
  sv.block();
  return 0;
}

// -- worker processes, seen from the client ------------------------------------------------------
std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) die("readlink /proc/self/exe failed");
  return std::string(buf, static_cast<std::size_t>(n));
}

// fork + exec of this program as a worker, in a process group of its own,
// its stdout and stderr to `out`. Everything the child touches before
// exec() is prepared here: the client's I/O thread runs meanwhile.
pid_t spawn_worker(const std::vector<std::string>& args, const std::string& out) {
  static const std::string exe = self_exe();
  std::vector<std::string> all{exe, "worker"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : all) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) die("cannot open " + out + ": " + std::strerror(errno));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    // A worker never outlives the benchmark (killed by a timeout, say).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    ::setpgid(0, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(fd);
  return pid;
}

// SIGTERM, then up to `grace` for a clean exit, then SIGKILL. Returns
// whether it left by itself.
bool stop_worker(pid_t pid, std::chrono::seconds grace) {
  ::kill(pid, SIGTERM);
  const auto until = clk::now() + grace;
  int st = 0;
  while (clk::now() < until) {
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    std::this_thread::sleep_for(10ms);
  }
  ::killpg(pid, SIGKILL);
  ::waitpid(pid, &st, 0);
  return false;
}

// The worker consumes: a noop comes back.
void wait_ready(dist::Client& client, pid_t pid, const std::string& what) {
  auto h = client.send<int>("noop", {7});
  if (!h.wait_for(60s)) die(what + " (pid " + std::to_string(pid) + ") did not answer within 60 s");
  if (h.get() != 7) die("LIBRARY PROBLEM: noop(7) came back as something else");
}

// -- a raw connection to the same server: the floor, and Redis's own counters ---------------------
// Plain blocking TCP (TCP_NODELAY), as the simplest client would. Used for
// the PING floor (what one Redis round trip costs on this machine, the
// wake-up of the blocked reader included) and to read INFO commandstats
// (how many commands a task costs Redis, Lua's inner calls included).
class RawRedis {
 public:
  explicit RawRedis(const std::string& url) {
    std::string rest = url.substr(url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
    if (auto at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
    rest = rest.substr(0, rest.find('/'));
    const auto colon = rest.rfind(':');
    const std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
    const std::string port = colon == std::string::npos ? "6379" : rest.substr(colon + 1);
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) return;
    fd_ = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ >= 0 && ::connect(fd_, res->ai_addr, res->ai_addrlen) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    ::freeaddrinfo(res);
    int one = 1;
    if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawRedis() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawRedis(const RawRedis&) = delete;
  RawRedis& operator=(const RawRedis&) = delete;
  bool ok() const { return fd_ >= 0; }

  bool ping() {
    static const char ping[] = "PING\r\n";
    if (!send(ping, sizeof ping - 1)) return false;
    char buf[16];
    std::size_t got = 0;
    while (got < 7) {  // "+PONG\r\n"
      const ssize_t r = ::read(fd_, buf + got, sizeof buf - got);
      if (r <= 0) return false;
      got += static_cast<std::size_t>(r);
    }
    return true;
  }

  /// INFO commandstats: calls per command ("hset", "fcall", ...).
  std::map<std::string, double> commandstats() {
    std::map<std::string, double> out;
    static const char info[] = "INFO commandstats\r\n";
    if (!ok() || !send(info, sizeof info - 1)) return out;
    std::string in;
    char buf[4096];
    std::size_t need = std::string::npos;
    while (need == std::string::npos || in.size() < need) {
      const ssize_t r = ::read(fd_, buf, sizeof buf);
      if (r <= 0) return out;
      in.append(buf, static_cast<std::size_t>(r));
      if (need == std::string::npos && in.find("\r\n") != std::string::npos)  // "$<len>\r\n<body>\r\n"
        need = in.find("\r\n") + 2 + std::stoul(in.substr(1, in.find("\r\n") - 1)) + 2;
    }
    std::istringstream lines(in);
    for (std::string l; std::getline(lines, l);) {
      if (l.rfind("cmdstat_", 0) != 0) continue;
      const auto colon = l.find(':'), calls = l.find("calls=");
      if (colon == std::string::npos || calls == std::string::npos) continue;
      out[l.substr(8, colon - 8)] = std::strtod(l.c_str() + calls + 6, nullptr);
    }
    return out;
  }

 private:
  bool send(const char* p, std::size_t n) { return ::write(fd_, p, n) == static_cast<ssize_t>(n); }
  int fd_ = -1;
};

std::vector<double> ping_round_trips_us(RawRedis& raw, long n) {
  std::vector<double> out;
  for (long i = 0; i < n / 10 && raw.ok() && raw.ping(); ++i) {
  }
  for (long i = 0; i < n && raw.ok(); ++i) {
    const auto t0 = clk::now();
    if (!raw.ping()) break;
    out.push_back(us(clk::now() - t0));
  }
  return out;
}

// Redis commands per task between two INFO commandstats: the total, and
// each command (most first).
std::vector<std::pair<std::string, double>> per_task(const std::map<std::string, double>& before,
                                                     const std::map<std::string, double>& after,
                                                     double tasks) {
  std::vector<std::pair<std::string, double>> out;
  double total = 0;
  for (auto& [k, v] : after) {
    const auto b = before.find(k);
    const double d = (v - (b == before.end() ? 0 : b->second)) / tasks;
    if (k == "info" || d <= 0) continue;
    total += d;
    out.emplace_back(k, d);
  }
  std::sort(out.begin(), out.end(), [](auto& x, auto& y) { return x.second > y.second; });
  out.insert(out.begin(), {"total", total});
  return out;
}

// Adds the calls between two INFO commandstats to `acc` (for per_task()
// over runs that alternate with others).
void add_calls(std::map<std::string, double>& acc, const std::map<std::string, double>& before,
               const std::map<std::string, double>& after) {
  for (auto& [k, v] : after) {
    const auto b = before.find(k);
    acc[k] += v - (b == before.end() ? 0 : b->second);
  }
}

// -- measurements -----------------------------------------------------------------------------------
struct Throughput {
  double total_per_s = 0, enqueue_per_s = 0;
  Cpu cpu;  // seconds used during the run
};

Throughput throughput_run(dist::Client& client, long n, long batch, pid_t redis = -1, pid_t worker = -1,
                          const dist::SendOptions& o = {}) {
  const Cpu c0 = cpu_now(redis, worker);
  std::vector<dist::RemoteHandle<int>> hs;
  hs.reserve(static_cast<std::size_t>(n));
  const auto t0 = clk::now();
  for (long i = 0; i < n; i += batch) {
    std::vector<json::array> args;
    const long end = std::min(n, i + batch);
    args.reserve(static_cast<std::size_t>(end - i));
    for (long k = i; k < end; ++k) args.push_back(json::array{k});
    auto part = client.send_many<int>("noop", std::move(args), o);
    for (auto& h : part) hs.push_back(std::move(h));
  }
  const auto t_sent = clk::now();
  long long sum = 0;
  for (auto& h : hs) {
    if (!h.wait_for(300s)) die("a noop task had no result within 300 s");
    sum += h.get();
  }
  const auto t1 = clk::now();
  const Cpu c1 = cpu_now(redis, worker);
  if (sum != static_cast<long long>(n) * (n - 1) / 2) die("LIBRARY PROBLEM: wrong sum of results");
  return {static_cast<double>(n) / secs(t1 - t0),
          static_cast<double>(n) / secs(t_sent - t0),
          {c1.redis - c0.redis, c1.worker - c0.worker, c1.client - c0.client}};
}

struct Lateness {
  long tasks = 0, early = 0, missing = 0;
  double send_s = 0;                        // the D sends, one after the other
  std::vector<double> worker_ms, redis_ms;  // started - due: the worker's clock (us), Redis's (ms)
};

// The countdown of task i of d: 200-2,000 ms, every value about once per
// 1,801 tasks, in an order that is not sorted (7919 is prime to 1801); the
// BullMQ peer uses the same formula.
long countdown_ms(long i) {
  return 200 + (i * 7919) % 1801;
}

// d: each task is sent with an eta (not a countdown) so that its due time
// is known to the millisecond on this side: Redis's clock and the worker's
// are this machine's.
Lateness lateness_run(dist::Client& client, long d) {
  Lateness l;
  l.tasks = d;
  std::vector<dist::RemoteHandle<std::int64_t>> hs;
  hs.reserve(static_cast<std::size_t>(d));
  const auto t0 = clk::now();
  for (long i = 0; i < d; ++i) {
    const std::int64_t due = unix_ms() + countdown_ms(i);
    dist::SendOptions o;
    o.eta = std::chrono::system_clock::time_point(std::chrono::milliseconds(due));
    hs.push_back(client.send<std::int64_t>("late_us", {due}, o));
  }
  l.send_s = secs(clk::now() - t0);
  for (auto& h : hs) {
    if (!h.wait_for(120s)) {
      ++l.missing;
      continue;
    }
    const double late = static_cast<double>(h.get()) / 1000.0;
    l.worker_ms.push_back(late);
    l.early += late < 0;
    const auto info = h.info();
    if (info.started_ms > 0 && info.due_ms > 0)
      l.redis_ms.push_back(static_cast<double>(info.started_ms - info.due_ms));
  }
  return l;
}

struct Recovery {
  long in_flight = 0, task_ms = 0, bound_s = 0;
  bool started_all_on_a = false, restarted_all = false, results_all = false;
  double restarted_s = -1, results_s = -1;  // from the kill; -1: not within the bound
  long results_within_bound = 0, restarted_within_bound = 0;
  long starts = 0, ends = 0, duplicate_completions = 0, tasks_run_more_than_twice = 0, wrong_results = 0;
  std::map<unsigned, long> attempts;  // attempt -> tasks
  bool b_stopped_cleanly = false;
};

struct LogLine {
  bool start = false;
  int tag = 0, pid = 0;
  std::int64_t ms = 0;
};

std::vector<LogLine> read_log(const std::string& path) {
  std::vector<LogLine> out;
  std::ifstream f(path);
  std::string what;
  LogLine l;
  while (f >> what >> l.tag >> l.pid >> l.ms) {
    l.start = what == "start";
    out.push_back(l);
  }
  return out;
}

Recovery recovery_run(dist::Client& client, const std::string& broker, const std::string& dir, long threads,
                      long r, long task_ms, long bound_s) {
  Recovery rec;
  rec.in_flight = r;
  rec.task_ms = task_ms;
  rec.bound_s = bound_s;
  const std::string log = dir + "/recovery.log";
  ::unlink(log.c_str());
  const std::string me = std::to_string(::getpid());
  const std::vector<std::string> common{
      "--broker",        broker,  "--threads", std::to_string(threads), "--prefetch",
      std::to_string(r), "--log", log};
  auto args_a = common;
  args_a.insert(args_a.end(), {"--name", "bench-A-" + me});
  const pid_t a = spawn_worker(args_a, dir + "/worker-A.log");
  wait_ready(client, a, "worker A");

  std::vector<json::array> args;
  for (long i = 0; i < r; ++i) args.push_back(json::array{task_ms, i});
  // All r in one write, so that A takes them all in one read, as the
  // peers' harnesses hand theirs over (sent in chunks of
  // ClientOptions::send_chunk, A took most in its first reads and the last
  // few only later: a quarter of its slots free, or refill_wait after one).
  dist::Client sender({.broker = broker, .send_chunk = static_cast<std::size_t>(r)});
  auto hs = sender.send_many<int>("sleep_ms", std::move(args));

  // Every task started on A (bounded), then a little into their sleep.
  const auto started_until = clk::now() + 30s;
  while (clk::now() < started_until) {
    std::set<int> tags;
    for (auto& l : read_log(log))
      if (l.start && l.pid == a) tags.insert(l.tag);
    if (static_cast<long>(tags.size()) == r) {
      rec.started_all_on_a = true;
      break;
    }
    std::this_thread::sleep_for(2ms);
  }
  std::this_thread::sleep_for(300ms);

  const auto kill_t = clk::now();
  const std::int64_t kill_ms = unix_ms();
  ::killpg(a, SIGKILL);
  int st = 0;
  ::waitpid(a, &st, 0);
  auto args_b = common;
  args_b.insert(args_b.end(), {"--name", "bench-B-" + me});
  const pid_t b = spawn_worker(args_b, dir + "/worker-B.log");

  const auto until = kill_t + std::chrono::seconds(bound_s);
  while (clk::now() < until) {
    long done = 0;
    for (auto& h : hs) done += h.done();
    if (done == r) {
      rec.results_all = true;
      rec.results_s = secs(clk::now() - kill_t);
      break;
    }
    std::this_thread::sleep_for(1ms);
  }
  for (auto& h : hs) rec.results_within_bound += h.done();

  // Restarts: the first start of each task after the kill, from the log
  // (wall clock of the same machine, ms).
  if (rec.results_all) std::this_thread::sleep_for(200ms);  // late lines
  std::map<int, std::int64_t> restarted;
  std::map<int, long> starts, ends;
  for (auto& l : read_log(log)) {
    (l.start ? starts : ends)[l.tag]++;
    if (l.start && l.pid != a && l.ms >= kill_ms && !restarted.count(l.tag)) restarted[l.tag] = l.ms;
  }
  rec.restarted_within_bound = static_cast<long>(restarted.size());
  if (rec.restarted_within_bound == r) {
    rec.restarted_all = true;
    std::int64_t last = 0;
    for (auto& [tag, ms] : restarted) last = std::max(last, ms);
    rec.restarted_s = static_cast<double>(last - kill_ms) / 1000.0;
  }
  for (auto& [tag, n] : starts) {
    rec.starts += n;
    rec.tasks_run_more_than_twice += n > 2;
  }
  for (auto& [tag, n] : ends) {
    rec.ends += n;
    rec.duplicate_completions += std::max(0L, n - 1);
  }
  for (long i = 0; i < r; ++i) {
    auto& h = hs[static_cast<std::size_t>(i)];
    if (!h.done()) continue;
    try {
      if (h.get() != i) ++rec.wrong_results;
      rec.attempts[h.attempt()]++;
    } catch (const std::exception&) {
      ++rec.wrong_results;
    }
  }
  rec.b_stopped_cleanly = stop_worker(b, 40s);
  return rec;
}

std::string fmt_s(double s) {
  return s < 0 ? std::string("-") : num("%.2f", s);
}

std::string json_s(double s) {
  return s < 0 ? std::string("null") : num("%.3f", s);
}

int run_client(const Args& a, const std::string& command) {
  const bool quick = a.has("quick");
  const std::string broker = a.get("broker", "redis://127.0.0.1:6379");
  const long n = a.num("tasks", quick ? 2'000 : 20'000);
  const long batch = a.num("batch", 1'000);
  const long runs = a.num("runs", quick ? 1 : 3);
  const long rtt_n = a.num("rtt", quick ? 300 : 2'000);
  const long warmup = a.num("warmup", quick ? 50 : 200);
  const long threads = a.num("threads", 2);
  const long prefetch = a.num("prefetch", 50);
  const long r = a.num("recovery-tasks", 100);
  const long task_ms = a.num("sleep-ms", 2'000);
  const long bound_s = a.num("bound-s", 60);
  const bool recovery = !a.has("no-recovery");
  const long delayed_n = a.num("delayed", quick ? 300 : 2'000);
  const long retry_attempts = a.num("retry-attempts", 3);
  const auto redis_pid = static_cast<pid_t>(a.num("redis-pid", -1));  // for CPU accounting only
  std::string dir = a.get("workdir", "");
  if (dir.empty()) {
    char tmpl[] = "/tmp/bench_distributed.XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp failed");
    dir = tmpl;
  }
  ::mkdir(dir.c_str(), 0755);
  const std::string load_start = loadavg();

  dist::Client client({.broker = broker});
  const std::vector<std::string> base{"--broker", broker, "--threads", std::to_string(threads)};

  // ---- a + b: one worker, prefetch `prefetch` ----------------------------------------------------
  auto wargs = base;
  wargs.insert(wargs.end(), {"--prefetch", std::to_string(prefetch), "--name", "bench-main"});
  pid_t w = spawn_worker(wargs, dir + "/worker-main.log");
  wait_ready(client, w, "the worker");
  // e: every send of these runs may be retried (the tasks succeed).
  dist::SendOptions with_retry;
  with_retry.retry = atask::RetryPolicy{.max_attempts = static_cast<unsigned>(retry_attempts)};
  (void)throughput_run(client, std::min(n, 2'000L), batch);  // warm-up
  (void)throughput_run(client, std::min(n, 2'000L), batch, -1, -1, with_retry);
  RawRedis raw(broker);
  std::map<std::string, double> calls, calls_retry;
  std::vector<double> tput, enq, tput_retry;
  Cpu cpu, cpu_retry;  // all runs
  // a and e alternate, and which goes first alternates too, so that a
  // change in the machine's load falls on both alike.
  auto one = [&](bool retry) {
    const auto s0 = raw.commandstats();
    auto t = throughput_run(client, n, batch, redis_pid, w, retry ? with_retry : dist::SendOptions{});
    add_calls(retry ? calls_retry : calls, s0, raw.commandstats());
    (retry ? tput_retry : tput).push_back(t.total_per_s);
    if (!retry) enq.push_back(t.enqueue_per_s);
    Cpu& c = retry ? cpu_retry : cpu;
    c.redis += t.cpu.redis;
    c.worker += t.cpu.worker;
    c.client += t.cpu.client;
  };
  for (long i = 0; i < runs; ++i) {
    one(i % 2 == 1);
    one(i % 2 == 0);
  }
  const auto cmds = per_task({}, calls, static_cast<double>(n * runs));
  const auto cmds_retry = per_task({}, calls_retry, static_cast<double>(n * runs));
  // CPU microseconds per task, each process (-1: not measured).
  const double per = 1e6 / static_cast<double>(n * runs);
  const double cpu_redis = redis_pid > 0 ? cpu.redis * per : -1, cpu_worker = cpu.worker * per,
               cpu_client = cpu.client * per;
  const double cpu_redis_retry = redis_pid > 0 ? cpu_retry.redis * per : -1,
               cpu_worker_retry = cpu_retry.worker * per, cpu_client_retry = cpu_retry.client * per;

  std::vector<double> rtt_us;
  for (long i = 0; i < warmup; ++i)
    if (client.send<int>("noop", {i}).get() != i) die("LIBRARY PROBLEM: wrong round trip result");
  for (long i = 0; i < rtt_n; ++i) {
    const auto t0 = clk::now();
    auto h = client.send<int>("noop", {i});
    const int v = h.get();
    rtt_us.push_back(us(clk::now() - t0));
    if (v != i) die("LIBRARY PROBLEM: wrong round trip result");
  }
  const std::vector<double> ping_us = ping_round_trips_us(raw, rtt_n);

  // ---- d: delayed tasks on the same worker, idle again ------------------------------------------
  const Lateness late = delayed_n > 0 ? lateness_run(client, delayed_n) : Lateness{};
  const bool main_clean = stop_worker(w, 40s);

  // ---- a with the default prefetch (0: four times the pool) ------------------------------------------
  auto dargs = base;
  dargs.insert(dargs.end(), {"--prefetch", "0", "--name", "bench-default"});
  w = spawn_worker(dargs, dir + "/worker-default.log");
  wait_ready(client, w, "the default-prefetch worker");
  std::vector<double> tput_default;
  for (long i = 0; i < runs; ++i) tput_default.push_back(throughput_run(client, n, batch).total_per_s);
  const bool default_clean = stop_worker(w, 40s);

  // ---- c ---------------------------------------------------------------------------------------
  Recovery rec;
  if (recovery) rec = recovery_run(client, broker, dir, threads, r, task_ms, bound_s);

  // ---- report ----------------------------------------------------------------------------------
  const double t_med = median(tput), e_med = median(enq), d_med = median(tput_default),
               r_med = median(tput_retry), r_ratio = t_med > 0 ? r_med / t_med : 0;
  const auto q = [](const std::vector<double>& v, double p) { return percentile(v, p); };
  const double p50 = percentile(rtt_us, .5) / 1000, p90 = percentile(rtt_us, .9) / 1000,
               p99 = percentile(rtt_us, .99) / 1000, pmax = percentile(rtt_us, 1.0) / 1000;
  const double ping50 = percentile(ping_us, .5) / 1000, ping99 = percentile(ping_us, .99) / 1000;
  utsname un{};
  ::uname(&un);
  const std::string load_end = loadavg();
  auto join = [](const std::vector<double>& v) {
    std::string s;
    for (double x : v) s += (s.empty() ? "" : " ") + num("%.0f", x);
    return s;
  };

  std::printf("\natask distributed mode (%s): %s\n", quick ? "quick" : "full", command.c_str());
  std::printf("  %s %s, %u hardware threads; load average at start %s, at end %s; worker logs in %s\n",
              un.sysname, un.release, std::thread::hardware_concurrency(), load_start.c_str(),
              load_end.c_str(), dir.c_str());
  std::printf(
      "  one client process, one worker process (Supervisor pool_size %ld, Consumer on queue 'default'); "
      "client, worker and redis-server share the machine\n"
      "  a: %ld noop tasks per run, send_many() in batches of %ld, then every result waited for; %ld runs, "
      "median\n"
      "  b: %ld sequential send<int>(\"noop\").get() after %ld warm-up round trips\n"
      "  d: %ld late_us tasks sent one at a time to the idle worker, each with eta = now + 200-2,000 ms "
      "(spread); lateness = start on the worker - due\n"
      "  e: a with RetryPolicy{.max_attempts = %ld} on every send (tasks succeed), runs alternating with "
      "a's\n",
      threads, n, batch, runs, rtt_n, warmup, delayed_n, retry_attempts);
  if (recovery)
    std::printf(
        "  c: %ld sleep_ms(%ld) coroutine tasks on worker A (prefetch %ld), SIGKILL to its process group "
        "300 ms after all started, worker B started at once; consumer defaults heartbeat 1 s, dead_after "
        "5 s, reap_every 1 s; bounded at %ld s\n",
        r, task_ms, r, bound_s);
  std::printf("\n%-58s %14s\n", "metric", "atask");
  auto row = [](const std::string& m, const std::string& v) {
    std::printf("%-58s %14s\n", m.c_str(), v.c_str());
  };
  row("a. throughput, prefetch " + std::to_string(prefetch) + " (tasks/s)", num("%.0f", t_med));
  row("   runs (tasks/s)", join(tput));
  row("   enqueue rate alone (send_many, tasks/s)", num("%.0f", e_med));
  row("   throughput, default prefetch (4 x pool = " + std::to_string(4 * threads) + ") (tasks/s)",
      num("%.0f", d_med));
  row("   CPU per task: redis-server / worker / client (us)",
      (cpu_redis < 0 ? std::string("-") : num("%.1f", cpu_redis)) + " / " + num("%.1f", cpu_worker) + " / " +
          num("%.1f", cpu_client));
  {
    std::string top;
    for (std::size_t k = 1; k < cmds.size() && k <= 6; ++k)
      top += (top.empty() ? "" : ", ") + cmds[k].first + " " + num("%.2f", cmds[k].second);
    row("   Redis commands per task (Lua's inner calls included)",
        cmds.empty() ? std::string("-") : num("%.1f", cmds.front().second));
    if (!top.empty()) std::printf("     %s\n", top.c_str());
  }
  row("b. round trip p50 (ms)", num("%.3f", p50));
  row("   round trip p90 / p99 / max (ms)",
      num("%.3f", p90) + " / " + num("%.3f", p99) + " / " + num("%.2f", pmax));
  row("   floor: raw PING round trip p50 / p99 (ms)", num("%.3f", ping50) + " / " + num("%.3f", ping99));
  row("   round trip p50 / PING p50", ping50 > 0 ? num("%.1fx", p50 / ping50) : std::string("-"));
  if (recovery) {
    row("c. kill -> all " + std::to_string(r) + " restarted on B (s)", fmt_s(rec.restarted_s));
    row("   kill -> all " + std::to_string(r) + " results at the client (s)", fmt_s(rec.results_s));
    row("   results within " + std::to_string(bound_s) + " s",
        std::to_string(rec.results_within_bound) + "/" + std::to_string(r));
    row("   runs started / completed (want " + std::to_string(2 * r) + " / " + std::to_string(r) + ")",
        std::to_string(rec.starts) + " / " + std::to_string(rec.ends));
    row("   duplicate completions", std::to_string(rec.duplicate_completions));
    std::string att;
    for (auto& [k, v] : rec.attempts)
      att += (att.empty() ? "" : ", ") + std::to_string(v) + "x" + std::to_string(k);
    row("   attempt of each result (count x attempt)", att.empty() ? "-" : att);
  }
  if (delayed_n > 0) {
    const auto& v = late.worker_ms;
    row("d. delayed lateness p50 / p90 (ms)", num("%.2f", q(v, .5)) + " / " + num("%.2f", q(v, .9)));
    row("   p99 / max (ms)", num("%.2f", q(v, .99)) + " / " + num("%.2f", q(v, 1.0)));
    row("   Redis's side, started_ms - due_ms: p50 / p99 / max (ms)",
        num("%.0f", q(late.redis_ms, .5)) + " / " + num("%.0f", q(late.redis_ms, .99)) + " / " +
            num("%.0f", q(late.redis_ms, 1.0)));
    row("   early / without a result (want 0 / 0)",
        std::to_string(late.early) + " / " + std::to_string(late.missing));
    row("   the " + std::to_string(delayed_n) + " sends took (s)", num("%.2f", late.send_s));
  }
  row("e. throughput, retries on (tasks/s)", num("%.0f", r_med));
  row("   runs (tasks/s)", join(tput_retry));
  row("   retries on / off (medians)", num("%.2fx", r_ratio));
  row("   CPU per task, retries on: redis-server / worker / client (us)",
      (cpu_redis_retry < 0 ? std::string("-") : num("%.1f", cpu_redis_retry)) + " / " +
          num("%.1f", cpu_worker_retry) + " / " + num("%.1f", cpu_client_retry));
  row("   Redis commands per task, retries on",
      cmds_retry.empty() ? std::string("-") : num("%.1f", cmds_retry.front().second));
  const bool ok = main_clean && default_clean && late.early == 0 && late.missing == 0 &&
                  (!recovery || (rec.started_all_on_a && rec.results_all && rec.wrong_results == 0));
  const std::string b_clean = recovery ? std::string(", B ") + yes(rec.b_stopped_cleanly) : "";
  std::printf(
      "\n  workers stopped cleanly on SIGTERM: main %s, default-prefetch %s%s; all results right: %s\n\n",
      yes(main_clean), yes(default_clean), b_clean.c_str(), yes(rec.wrong_results == 0));

  std::string cmds_json;
  for (auto& [k, v] : cmds) cmds_json += (cmds_json.empty() ? "" : ",") + ("\"" + k + "\":" + num("%.3f", v));
  std::string runs_json;
  for (double x : tput) runs_json += (runs_json.empty() ? "" : ",") + num("%.0f", x);
  std::string cmds_retry_json;
  for (auto& [k, v] : cmds_retry)
    cmds_retry_json += (cmds_retry_json.empty() ? "" : ",") + ("\"" + k + "\":" + num("%.3f", v));
  std::string retry_runs_json;
  for (double x : tput_retry) retry_runs_json += (retry_runs_json.empty() ? "" : ",") + num("%.0f", x);
  auto pct_json = [&](const std::vector<double>& v, const char* f) {
    return "{\"p50\":" + num(f, q(v, .5)) + ",\"p90\":" + num(f, q(v, .9)) + ",\"p99\":" + num(f, q(v, .99)) +
           ",\"max\":" + num(f, q(v, 1.0)) + ",\"samples\":" + std::to_string(v.size()) + "}";
  };
  std::string att_json;
  for (auto& [k, v] : rec.attempts)
    att_json += (att_json.empty() ? "" : ",") + ("\"" + std::to_string(k) + "\":" + std::to_string(v));
  std::printf(
      "{\"bench\":\"distributed\",\"system\":\"atask\",\"quick\":%s,"
      "\"worker\":{\"processes\":1,\"threads\":%ld,\"prefetch\":%ld},"
      "\"throughput\":{\"tasks\":%ld,\"batch\":%ld,\"runs\":[%s],\"median\":%.0f,\"enqueue_median\":%.0f,"
      "\"default_prefetch_median\":%.0f,\"cpu_us_per_task\":{\"redis\":%s,\"worker\":%.1f,"
      "\"client\":%.1f},\"redis_commands_per_task\":{%s}},"
      "\"rtt_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"max\":%.3f,\"samples\":%zu,"
      "\"ping_p50\":%.4f,\"ping_p99\":%.4f},"
      "\"recovery\":{\"ran\":%s,\"in_flight\":%ld,\"task_ms\":%ld,\"bound_s\":%ld,\"restarted_s\":%s,"
      "\"results_s\":%s,\"results_within_bound\":%ld,\"starts\":%ld,\"completions\":%ld,"
      "\"duplicate_completions\":%ld,\"attempts\":{%s}},"
      "\"delayed\":{\"ran\":%s,\"tasks\":%ld,\"countdown_ms\":[200,2000],\"send_s\":%.3f,\"early\":%ld,"
      "\"missing\":%ld,\"lateness_ms\":%s,\"redis_lateness_ms\":%s},"
      "\"retry\":{\"max_attempts\":%ld,\"runs\":[%s],\"median\":%.0f,\"ratio\":%.4f,"
      "\"cpu_us_per_task\":{\"redis\":%s,\"worker\":%.1f,\"client\":%.1f},"
      "\"redis_commands_per_task\":{%s}},"
      "\"ok\":%s,\"loadavg\":{\"start\":\"%s\",\"end\":\"%s\"}}\n",
      quick ? "true" : "false", threads, prefetch, n, batch, runs_json.c_str(), t_med, e_med, d_med,
      cpu_redis < 0 ? "null" : num("%.1f", cpu_redis).c_str(), cpu_worker, cpu_client, cmds_json.c_str(), p50,
      p90, p99, pmax, rtt_us.size(), ping50, ping99, recovery ? "true" : "false", r, task_ms, bound_s,
      json_s(rec.restarted_s).c_str(), json_s(rec.results_s).c_str(), rec.results_within_bound, rec.starts,
      rec.ends, rec.duplicate_completions, att_json.c_str(), delayed_n > 0 ? "true" : "false", delayed_n,
      late.send_s, late.early, late.missing, pct_json(late.worker_ms, "%.3f").c_str(),
      pct_json(late.redis_ms, "%.0f").c_str(), retry_attempts, retry_runs_json.c_str(), r_med, r_ratio,
      cpu_redis_retry < 0 ? "null" : num("%.1f", cpu_redis_retry).c_str(), cpu_worker_retry, cpu_client_retry,
      cmds_retry_json.c_str(), ok ? "true" : "false", load_start.c_str(), load_end.c_str());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::printf(
        "usage: bench_distributed client --broker URL [--quick] [--tasks N] [--batch N] [--runs N] [--rtt "
        "N]\n"
        "                                [--warmup N] [--threads N] [--prefetch N] [--recovery-tasks N]\n"
        "                                [--sleep-ms N] [--bound-s N] [--workdir DIR] [--no-recovery]\n"
        "                                [--redis-pid PID] [--delayed N] [--retry-attempts N]\n"
        "       bench_distributed worker --broker URL [--threads N] [--prefetch N] [--name NAME] [--log "
        "FILE]\n");
    return argc < 2 ? 2 : 0;
  }
  const std::string mode = argv[1];
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  if (mode == "worker") return run_worker(parse(argc, argv, 2, {}));
  if (mode == "client") return run_client(parse(argc, argv, 2, {"quick", "no-recovery"}), command);
  die("unknown mode '" + mode + "' (client or worker)");
}
