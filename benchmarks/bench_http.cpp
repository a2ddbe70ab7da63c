// HTTP control plane under load: wrk (Debian's /usr/bin/wrk, run as a child
// process) against a supervisor with --workers (default 1,000) registered and
// started workers, while a background load of small tasks runs.
//
// Workers, a fixed mix scaled to --workers:
//   40% EventWorker, idle until triggered (every 4th interval worker
//       triggers one when it runs);
//   30% IntervalWorker, each every 1-5 s, first runs staggered over 1 s;
//       each run puts an int into a queue worker;
//   20% QueueWorker<int>, fed by the interval workers;
//   10% AsyncWorker (coroutine background worker) that awaits a 1-5 s timer
//       per run - a poller that holds no thread. A blocking BackgroundWorker
//       would loop forever on the pool; that is not a control-plane load.
//   One of the interval workers is a probe (async, every 10 ms) whose gaps
//   between runs show how late the supervisor's io_context thread - where
//   the HTTP server runs too - fires timers while wrk hammers it.
// Background load: one producer thread keeps 64 tasks outstanding
// (Supervisor::submit at low priority, ~3 us of arithmetic each); the tasks
// completed per second are counted during every phase.
// Pool: pool_size 2, reserve_normal 1, reserve_high 1 (the low-priority load
// cannot take the slot worker runs need).
//
// Phases, in --rounds interleaved rounds (the order rotates each round):
//   idle              no HTTP traffic, the load and the workers only;
//   GET /api/nope     the baseline: parse, route, a 404 JSON reply - the
//                     server's floor, same server, same run;
//   GET /api/supervisor, GET /api/workers (the dashboard's poll, 1,000
//   workers as JSON), GET /metrics (a Prometheus series per worker and kind).
// Each: `wrk -t<T> -c<C> -d<S>s --timeout 10s --latency URL`; Requests/sec and
// the 50%/99% lines of its latency distribution. (--timeout 10s, the server's
// own request_timeout: wrk's default 2 s would count closed-loop queueing
// behind slow /metrics replies at high -c as socket errors.) Reported: medians over rounds, ratio =
// req/s / the same round's 404 req/s, load tasks/s vs the same round's idle
// phase. A non-2xx reply or a socket error on a real endpoint fails the run
// (exit 1, after the table). Then, in-process, the cost of one
// prometheus_text() call and of its snapshots, without HTTP.
//
// With --dashboards, instead of all that: what open dashboards cost the
// server, pushed vs polled. Same workers, no background load. Phases, in
// --rounds interleaved rounds: idle (no client), then 1, 10 and 50 pages
// each (a) holding GET /api/events open (the dashboard's stream) or (b)
// polling as the page does without its stream: GET /api/supervisor,
// /api/workers and /api/tasks?limit=30 once a second on a keep-alive
// connection. The pages are a child process (bench_http --client ...), so
// the server's CPU - getrusage(RUSAGE_SELF), user + system, over the phase -
// is the server's own; reported per second of wall time, and above idle per
// page.
//
// Usage: bench_http [--duration S] [--connections N] [--threads N] [--rounds N] [--workers N] [--dashboards]
// Prints a markdown table, then one JSON object on the last line.

#include "support.hpp"

#include <atask/atask.hpp>
#include <atask/http.hpp>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <semaphore>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace asio = boost::asio;
using namespace bench;
using namespace std::chrono_literals;

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bench_http: %s\n", msg.c_str());
  std::exit(2);
}

struct Config {
  int duration_s = 5, connections = 16, threads = 1, rounds = 3, workers = 1000;
  bool dashboards = false;  // --dashboards: the open-dashboard cost instead of the wrk rounds
};

Config parse_args(int argc, char** argv) {
  Config c;
  auto value = [&](int& i) {
    if (i + 1 >= argc) die(std::string(argv[i]) + " needs a value");
    char* end = nullptr;
    const long v = std::strtol(argv[++i], &end, 10);
    if (*end != '\0' || v <= 0 || v > 1'000'000)
      die(std::string(argv[i - 1]) + ": '" + argv[i] + "' is not a positive integer");
    return static_cast<int>(v);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--duration")
      c.duration_s = value(i);
    else if (a == "--connections")
      c.connections = value(i);
    else if (a == "--threads")
      c.threads = value(i);
    else if (a == "--rounds")
      c.rounds = value(i);
    else if (a == "--workers")
      c.workers = value(i);
    else if (a == "--dashboards")
      c.dashboards = true;
    else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: bench_http [--duration S=5] [--connections N=16] [--threads N=1] [--rounds N=3] "
          "[--workers N=1000] [--dashboards]\n"
          "  --dashboards: instead of the wrk rounds, the server's CPU per second with 1, 10 and 50 open\n"
          "  dashboards, pushed (GET /api/events) vs polling every second, --duration S per phase\n");
      std::exit(0);
    } else
      die("unknown option '" + a + "' (try --help)");
  }
  if (c.threads > c.connections) die("--threads must not exceed --connections (wrk refuses it)");
  return c;
}

// The path of `name` in $PATH, or "" (what `command -v` does).
std::string find_in_path(const std::string& name) {
  const char* p = std::getenv("PATH");
  std::stringstream ss(p ? p : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const std::string f = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(f.c_str(), X_OK) == 0) return f;
  }
  return "";
}

// -- the background load ------------------------------------------------------------

// Deterministic arithmetic (xorshift), so that a task's cost does not depend
// on the clock or on preemption.
std::uint64_t spin(std::uint64_t n) {
  std::uint64_t x = 88172645463325252ull;
  for (std::uint64_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}
std::atomic<std::uint64_t> spin_sink{0};

// Iterations of spin() that take about `target` on this machine, now.
std::uint64_t calibrate(clk::duration target) {
  const std::uint64_t n = 2'000'000;
  std::vector<double> t;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = clk::now();
    spin_sink.fetch_add(spin(n), std::memory_order_relaxed);
    t.push_back(secs(clk::now() - t0));
  }
  const double per_iter = *std::min_element(t.begin(), t.end()) / double(n);
  return std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(std::chrono::duration<double>(target).count() / per_iter));
}

class Load {
 public:
  static constexpr int outstanding = 64;

  Load(atask::Supervisor& sv, std::uint64_t iters) : sv_(sv), iters_(iters) {}
  ~Load() { stop(); }

  void start() {
    th_ = std::thread([this] { produce(); });
  }
  // Stops submitting and waits for the tasks in flight.
  void stop() {
    if (!th_.joinable()) return;
    stop_.store(true);
    th_.join();
    for (int i = 0; i < outstanding; ++i) slots_.acquire();
  }
  std::uint64_t done() const { return done_.load(std::memory_order_relaxed); }
  std::uint64_t submit_errors() const { return submit_errors_.load(); }

 private:
  void produce() {
    const atask::TaskOptions o{.priority = atask::Priority::low, .name = "load"};
    while (!stop_.load(std::memory_order_relaxed)) {
      if (!slots_.try_acquire_for(50ms)) continue;
      try {
        static_cast<void>(sv_.submit(o, [this] {
          spin_sink.fetch_add(spin(iters_), std::memory_order_relaxed);
          done_.fetch_add(1, std::memory_order_relaxed);
          slots_.release();
        }));
      } catch (const std::exception&) {
        submit_errors_.fetch_add(1);
        slots_.release();
        std::this_thread::sleep_for(1ms);
      }
    }
  }

  atask::Supervisor& sv_;
  const std::uint64_t iters_;
  std::counting_semaphore<outstanding> slots_{outstanding};
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> done_{0}, submit_errors_{0};
  std::thread th_;
};

// -- the timer probe ------------------------------------------------------------------

class Probe {
 public:
  void hit() {
    const auto t = clk::now();
    std::lock_guard lk(m_);
    runs_.push_back(t);
  }
  // Gaps (ms) between consecutive runs that both fell in [t0, t1].
  std::vector<double> gaps(clk::time_point t0, clk::time_point t1) const {
    std::lock_guard lk(m_);
    std::vector<double> g;
    auto it = std::lower_bound(runs_.begin(), runs_.end(), t0);
    for (; it != runs_.end() && *it <= t1; ++it)
      if (it + 1 != runs_.end() && *(it + 1) <= t1) g.push_back(ms(*(it + 1) - *it));
    return g;
  }

 private:
  mutable std::mutex m_;
  std::vector<clk::time_point> runs_;
};

// -- a tiny HTTP/1.1 client: one GET, Connection: close -----------------------------------

struct Fetched {
  int status = 0;
  std::size_t header_bytes = 0;
  std::string body;
};

Fetched fetch(unsigned short port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket(): " + std::string(std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    die("connect to 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  for (std::size_t off = 0; off < req.size();) {
    const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) die("send(): " + std::string(std::strerror(errno)));
    off += static_cast<std::size_t>(n);
  }
  std::string all;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    all.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  Fetched f;
  const auto end = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) die("GET " + path + ": not an HTTP reply");
  f.status = std::atoi(all.c_str() + 9);
  f.header_bytes = end + 4;
  f.body = all.substr(end + 4);
  return f;
}

// -- wrk ---------------------------------------------------------------------------------

struct Wrk {
  double rps = 0, p50_ms = 0, p99_ms = 0, transfer_bps = 0;
  long requests = 0, non2xx = 0, e_connect = 0, e_read = 0, e_write = 0, e_timeout = 0;
  std::string output;
  long socket_errors() const { return e_connect + e_read + e_write + e_timeout; }
};

// "1.23ms" -> 1.23 (ms); wrk prints us, ms, s, m, h.
double to_ms(const std::string& s) {
  std::size_t pos = 0;
  const double v = std::stod(s, &pos);
  const std::string u = s.substr(pos);
  if (u == "us") return v / 1000;
  if (u == "ms") return v;
  if (u == "s") return v * 1000;
  if (u == "m") return v * 60'000;
  if (u == "h") return v * 3'600'000;
  die("wrk: unknown time unit in '" + s + "'");
}

// "251.00KB" -> bytes; wrk prints B, KB, MB, GB, TB (powers of 1024).
double to_bytes(const std::string& s) {
  std::size_t pos = 0;
  const double v = std::stod(s, &pos);
  const std::string u = s.substr(pos);
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double f = 1;
  for (const char* x : units) {
    if (u == x) return v * f;
    f *= 1024;
  }
  die("wrk: unknown size unit in '" + s + "'");
}

// Runs wrk with `args` (argv[1..]) and returns its stdout and stderr.
std::string run(const std::string& exe, const std::vector<std::string>& args) {
  int p[2];
  if (::pipe(p) != 0) die("pipe(): " + std::string(std::strerror(errno)));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  posix_spawn_file_actions_addclose(&fa, p[1]);
  std::vector<char*> argv{const_cast<char*>(exe.c_str())};
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[1]);
  if (rc != 0) die("cannot run " + exe + ": " + std::strerror(rc));
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die(exe + " failed:\n" + out);
  return out;
}

Wrk parse_wrk(const std::string& out) {
  Wrk w;
  w.output = out;
  bool have_rps = false, have_p99 = false, in_dist = false;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string first;
    ls >> first;
    if (first == "Latency" && line.find("Distribution") != std::string::npos) {
      in_dist = true;
      continue;
    }
    if (in_dist && (first == "50%" || first == "99%")) {
      std::string v;
      ls >> v;
      (first == "50%" ? w.p50_ms : w.p99_ms) = to_ms(v);
      have_p99 |= first == "99%";
      continue;
    }
    if (first.empty() || first.back() != '%') in_dist = false;
    if (first == "Requests/sec:") {
      ls >> w.rps;
      have_rps = true;
    } else if (first == "Transfer/sec:") {
      std::string v;
      ls >> v;
      w.transfer_bps = to_bytes(v);
    } else if (line.find(" requests in ") != std::string::npos) {
      w.requests = std::stol(first);
    } else if (first == "Socket") {  // Socket errors: connect 0, read 0, write 0, timeout 0
      std::sscanf(line.c_str(), " Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &w.e_connect,
                  &w.e_read, &w.e_write, &w.e_timeout);
    } else if (first == "Non-2xx") {  // Non-2xx or 3xx responses: N
      w.non2xx = std::stol(line.substr(line.rfind(':') + 1));
    }
  }
  if (!have_rps || !have_p99) die("cannot parse wrk's output:\n" + out);
  return w;
}

// -- phases --------------------------------------------------------------------------------

struct Endpoint {
  std::string label, path;
  bool baseline = false;  // the 404 floor: non-2xx expected
};

struct Sample {
  Wrk wrk;                   // empty for the idle phase
  double load_tps = 0;       // background tasks completed per second
  std::vector<double> gaps;  // probe gaps, ms
};

std::string fmt_rate(double v) {
  return num(v >= 100 ? "%.0f" : "%.1f", v);
}

// -- open dashboards: the pages (a child process) ------------------------------------------

int connect_to(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket(): " + std::string(std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    die("connect to 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
  timeval tv{.tv_sec = 1, .tv_usec = 0};  // a stream reader looks at the clock at least once a second
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool send_all(int fd, const std::string& s) {
  for (std::size_t off = 0; off < s.size();) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads one response with a Content-Length from a keep-alive connection;
// `buf` keeps what came after it. Returns its status (0: the connection failed).
int read_reply(int fd, std::string& buf, long& bytes) {
  char chunk[65536];
  auto more = [&] {
    for (;;) {
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return false;
      buf.append(chunk, static_cast<std::size_t>(n));
      bytes += n;
      return true;
    }
  };
  std::size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos)
    if (!more()) return 0;
  const int status = std::atoi(buf.c_str() + 9);
  const auto cl = buf.find("Content-Length: ");
  const std::size_t length = cl != std::string::npos && cl < end ? std::stoul(buf.substr(cl + 16)) : 0;
  while (buf.size() < end + 4 + length)
    if (!more()) return 0;
  buf.erase(0, end + 4 + length);
  return status;
}

// bench_http --client sse|poll --port P --count N --seconds S: N pages for S
// seconds; prints "bytes B events E requests R errors X".
int client_main(int argc, char** argv) {
  std::string mode;
  unsigned short port = 0;
  int count = 0, seconds = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--mode")
      mode = argv[i + 1];
    else if (a == "--port")
      port = static_cast<unsigned short>(std::atoi(argv[i + 1]));
    else if (a == "--count")
      count = std::atoi(argv[i + 1]);
    else if (a == "--seconds")
      seconds = std::atoi(argv[i + 1]);
  }
  if ((mode != "sse" && mode != "poll") || port == 0 || count <= 0 || seconds <= 0)
    die("--client needs --mode sse|poll --port P --count N --seconds S");
  std::atomic<long> bytes{0}, events{0}, requests{0}, errors{0};
  const auto start = clk::now(), end = start + std::chrono::seconds(seconds);
  std::vector<std::thread> pages;
  for (int i = 0; i < count; ++i)
    pages.emplace_back([&, i] {
      // Pages opened at different moments of a second, as people open them.
      std::this_thread::sleep_until(start + std::chrono::milliseconds(1000 * i / count));
      const int fd = connect_to(port);
      long got = 0;
      if (mode == "sse") {
        if (!send_all(fd, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"))
          ++errors;
        char chunk[65536];
        std::string tail;  // "event: " split across two reads is still counted once
        while (clk::now() < end) {
          const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
          if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
          if (n <= 0) {
            ++errors;
            break;
          }
          got += n;
          std::string text = tail + std::string(chunk, static_cast<std::size_t>(n));
          for (auto at = text.find("event: "); at != std::string::npos; at = text.find("event: ", at + 1))
            ++events;
          tail = text.size() > 6 ? text.substr(text.size() - 6) : text;
        }
      } else {
        std::string buf;
        while (clk::now() < end) {
          const auto t0 = clk::now();
          for (const char* path : {"/api/supervisor", "/api/workers", "/api/tasks?limit=30"}) {
            if (!send_all(fd, std::string("GET ") + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") ||
                read_reply(fd, buf, got) != 200) {
              ++errors;
              break;
            }
            ++requests;
          }
          std::this_thread::sleep_until(t0 + 1s);
        }
      }
      ::close(fd);
      bytes += got;
    });
  for (auto& t : pages) t.join();
  std::printf("bytes %ld events %ld requests %ld errors %ld\n", bytes.load(), events.load(), requests.load(),
              errors.load());
  return errors.load() == 0 ? 0 : 1;
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The server's CPU with open dashboards, pushed vs polled (--dashboards).
int run_dashboards(const Config& cfg, atask::http::Server& server, std::size_t registered,
                   const std::string& command) {
  char self[4096];
  const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) die("cannot find this program (/proc/self/exe)");
  const std::string exe(self, static_cast<std::size_t>(len));
  struct Phase {
    std::string mode;  // "", "sse", "poll"
    int pages = 0;
  };
  const std::vector<Phase> phases{{"", 0},      {"sse", 1},  {"poll", 1}, {"sse", 10},
                                  {"poll", 10}, {"sse", 50}, {"poll", 50}};
  struct Got {
    double cpu = 0, bytes = 0, events = 0, requests = 0;  // per second
  };
  std::vector<std::vector<Got>> got(phases.size());
  std::this_thread::sleep_for(1s);  // the interval workers' first runs settle
  const std::string load_start = loadavg();
  for (int r = 0; r < cfg.rounds; ++r)
    for (std::size_t k = 0; k < phases.size(); ++k) {
      const std::size_t ph = (k + static_cast<std::size_t>(r)) % phases.size();
      const Phase& p = phases[ph];
      const double c0 = cpu_seconds();
      const auto t0 = clk::now();
      std::string out;
      if (p.mode.empty())
        std::this_thread::sleep_for(std::chrono::seconds(cfg.duration_s));
      else
        out = run(exe, {"--client", "--mode", p.mode, "--port", std::to_string(server.port()), "--count",
                        std::to_string(p.pages), "--seconds", std::to_string(cfg.duration_s)});
      const double wall = secs(clk::now() - t0);
      Got g;
      g.cpu = (cpu_seconds() - c0) / wall;
      long b = 0, e = 0, q = 0, x = 0;
      if (!out.empty() &&
          std::sscanf(out.c_str(), "bytes %ld events %ld requests %ld errors %ld", &b, &e, &q, &x) != 4)
        die("cannot read the pages' report: " + out);
      g.bytes = double(b) / wall;
      g.events = double(e) / wall;
      g.requests = double(q) / wall;
      std::fprintf(
          stderr,
          "  round %d/%d %-5s %2d pages: server CPU %.1f ms/s, %.0f bytes/s, %.1f events/s, %.1f req/s\n",
          r + 1, cfg.rounds, p.mode.empty() ? "idle" : p.mode.c_str(), p.pages, g.cpu * 1000, g.bytes,
          g.events, g.requests);
      got[ph].push_back(g);
    }
  const std::string load_end = loadavg();
  auto med = [&](std::size_t ph, double Got::*f) {
    std::vector<double> v;
    for (const auto& g : got[ph]) v.push_back(g.*f);
    return median(v);
  };
  auto above_idle = [&](std::size_t ph) {  // median over rounds of (phase - the same round's idle)
    std::vector<double> v;
    for (std::size_t r = 0; r < got[ph].size(); ++r) v.push_back(got[ph][r].cpu - got[0][r].cpu);
    return median(v);
  };
  std::printf(
      "\natask HTTP control plane: open dashboards with %zu workers (the bench's mix, no background load); "
      "%d s per phase, %d interleaved rounds, medians; load average at start %s, at end %s (%u cores)\n"
      "command: %s\n\n",
      registered, cfg.duration_s, cfg.rounds, load_start.c_str(), load_end.c_str(),
      std::thread::hardware_concurrency(), command.c_str());
  std::printf(
      "| pages | pushed: server CPU ms/s | above idle, per page | polled: server CPU ms/s | above idle, per "
      "page | "
      "polled / pushed (above idle) | bytes/s per page pushed / polled "
      "|\n|---:|---:|---:|---:|---:|---:|---:|\n");
  std::printf("| 0 (idle) | %.1f | | %.1f | | | |\n", med(0, &Got::cpu) * 1000, med(0, &Got::cpu) * 1000);
  std::string j = "{\"bench\":\"http_dashboards\",\"workers\":" + std::to_string(registered) +
                  ",\"duration_s\":" + std::to_string(cfg.duration_s) +
                  ",\"rounds\":" + std::to_string(cfg.rounds) +
                  ",\"idle_cpu_ms_per_s\":" + num("%.2f", med(0, &Got::cpu) * 1000) + ",\"pages\":{";
  for (std::size_t ph = 1; ph < phases.size(); ph += 2) {
    const int n = phases[ph].pages;
    const double sse = above_idle(ph), poll = above_idle(ph + 1);
    std::printf("| %d | %.1f | %.2f | %.1f | %.2f | %.1fx | %.0f / %.0f |\n", n, med(ph, &Got::cpu) * 1000,
                sse * 1000 / n, med(ph + 1, &Got::cpu) * 1000, poll * 1000 / n, sse > 0 ? poll / sse : 0.0,
                med(ph, &Got::bytes) / n, med(ph + 1, &Got::bytes) / n);
    j += std::string(ph > 1 ? "," : "") + "\"" + std::to_string(n) +
         "\":{\"sse_cpu_ms_per_s\":" + num("%.2f", med(ph, &Got::cpu) * 1000) +
         ",\"poll_cpu_ms_per_s\":" + num("%.2f", med(ph + 1, &Got::cpu) * 1000) +
         ",\"sse_above_idle_ms_per_s_per_page\":" + num("%.3f", sse * 1000 / n) +
         ",\"poll_above_idle_ms_per_s_per_page\":" + num("%.3f", poll * 1000 / n) +
         ",\"sse_bytes_per_s_per_page\":" + num("%.0f", med(ph, &Got::bytes) / n) +
         ",\"poll_bytes_per_s_per_page\":" + num("%.0f", med(ph + 1, &Got::bytes) / n) +
         ",\"sse_events_per_s_per_page\":" + num("%.2f", med(ph, &Got::events) / n) +
         ",\"poll_requests_per_s_per_page\":" + num("%.2f", med(ph + 1, &Got::requests) / n) + "}";
  }
  std::printf(
      "\n  server CPU: user + system time of the server process (its loop thread, pool threads and workers) "
      "per "
      "second of wall time; above idle: minus the same round's idle phase, divided by the pages\n"
      "  pushed: each page holds GET /api/events open (the state is read once per events_interval, 1 s, for "
      "all "
      "streams; a stream is sent what changed); polled: each page asks GET /api/supervisor, /api/workers and "
      "/api/tasks?limit=30 once a second on a keep-alive connection, what the dashboard does without its "
      "stream\n\n");
  j += "},\"loadavg\":{\"start\":\"" + load_start + "\",\"end\":\"" + load_end + "\"}}";
  std::printf("%s\n", j.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--client") == 0) return client_main(argc, argv);
  const Config cfg = parse_args(argc, argv);
  const std::string wrk = find_in_path("wrk");
  if (wrk.empty() && !cfg.dashboards)
    die("wrk is not installed (no 'wrk' in $PATH). It is the Debian package 'wrk': run scripts/setup.sh "
        "(or apt-get install wrk), then run this again.");

  std::string command = "bench_http";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  const std::string load_start = loadavg();

  // Before any thread exists.
  const std::uint64_t iters = calibrate(3us);

  auto log = std::make_shared<spdlog::logger>("bench", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log->set_level(spdlog::level::warn);
  atask::Supervisor sv(
      {.id = "bench", .pool_size = 2, .reserve_normal = 1, .reserve_high = 1, .logger = log});
  // metrics_cache 0: every scrape renders the text, the cost this measures.
  auto server = atask::http::serve(
      sv, {.address = "127.0.0.1", .port = 0, .metrics_cache = std::chrono::milliseconds(0)});
  sv.start();
  const unsigned short port = server.port();
  const std::string base_url = "http://127.0.0.1:" + std::to_string(port);

  // -- the workers -------------------------------------------------------------------
  const int n = cfg.workers;
  const int n_event = std::max(1, n * 4 / 10), n_queue = std::max(1, n * 2 / 10),
            n_async = std::max(0, n / 10);
  const int n_interval = std::max(1, n - n_event - n_queue - n_async);  // includes the probe
  std::atomic<std::uint64_t> ev_runs{0}, iv_runs{0}, q_items{0}, bg_runs{0}, iv_put_full{0};
  std::vector<std::unique_ptr<atask::EventWorker>> events;
  std::vector<std::unique_ptr<atask::QueueWorker<int>>> queues;
  std::vector<std::unique_ptr<atask::Worker>> others;  // interval, async and the probe
  Probe probe;
  char name[64];
  for (int i = 0; i < n_event; ++i) {
    std::snprintf(name, sizeof name, "event-%04d", i);
    events.push_back(atask::event_worker(sv, [&ev_runs] { ev_runs.fetch_add(1, std::memory_order_relaxed); },
                                         {.name = name}));
  }
  for (int i = 0; i < n_queue; ++i) {
    std::snprintf(name, sizeof name, "queue-%04d", i);
    queues.push_back(
        atask::queue_worker<int>(sv, [&q_items](int) { q_items.fetch_add(1, std::memory_order_relaxed); },
                                 {.name = name, .capacity = 1000}));
  }
  // The probe: an async interval worker every 10 ms (timer on the loop thread, run on the aloop).
  others.push_back(atask::interval_worker(sv,
                                          [&probe]() -> asio::awaitable<void> {
                                            probe.hit();
                                            co_return;
                                          },
                                          {.name = "probe-10ms", .interval = 10ms}));
  for (int i = 0; i + 1 < n_interval; ++i) {
    std::snprintf(name, sizeof name, "interval-%04d", i);
    atask::QueueWorker<int>* q = queues[static_cast<std::size_t>(i) % queues.size()].get();
    atask::EventWorker* ev =
        i % 4 == 0 ? events[static_cast<std::size_t>(i / 4) % events.size()].get() : nullptr;
    others.push_back(
        atask::interval_worker(sv,
                               [&iv_runs, &iv_put_full, q, ev, i] {
                                 iv_runs.fetch_add(1, std::memory_order_relaxed);
                                 try {  // a stopping worker refuses (LifecycleError): only at shutdown
                                   int item = i;  // try_put(T&) leaves a refused item in place: not a const
                                   if (!q->try_put(item)) iv_put_full.fetch_add(1, std::memory_order_relaxed);
                                   if (ev) ev->trigger();
                                 } catch (const atask::LifecycleError&) {
                                 }
                               },
                               {.name = name,
                                .interval = std::chrono::milliseconds(1000 + (i * 397) % 4001),
                                .delay_before = std::chrono::milliseconds((i * 131) % 1000)}));
  }
  for (int i = 0; i < n_async; ++i) {
    std::snprintf(name, sizeof name, "poller-%04d", i);
    const auto wait = std::chrono::milliseconds(1000 + (i * 577) % 4001);
    others.push_back(
        atask::background_worker(sv,
                                 [&bg_runs, wait]() -> asio::awaitable<void> {
                                   asio::steady_timer t(co_await asio::this_coro::executor, wait);
                                   boost::system::error_code ec;  // a stop cancels the wait: no exception
                                   co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                                   bg_runs.fetch_add(1, std::memory_order_relaxed);
                                 },
                                 {.name = name}));
  }
  for (auto& w : events) w->start();
  for (auto& w : queues) w->start();
  for (auto& w : others) w->start();
  const std::size_t registered = sv.workers().size();
  if (cfg.dashboards) {
    const int rc = run_dashboards(cfg, server, registered, command);
    sv.stop();
    return rc;
  }

  // -- sanity: each endpoint answers what it should; its size --------------------------
  const std::vector<Endpoint> endpoints{{"GET /api/nope (404 baseline)", "/api/nope", true},
                                        {"GET /api/supervisor", "/api/supervisor"},
                                        {"GET /api/workers", "/api/workers"},
                                        {"GET /metrics", "/metrics"}};
  std::vector<std::size_t> body_bytes, reply_bytes;
  std::size_t metric_series = 0;
  for (const auto& e : endpoints) {
    const Fetched f = fetch(port, e.path);
    if (f.status != (e.baseline ? 404 : 200))
      die("GET " + e.path + " answered " + std::to_string(f.status) + ": " + f.body.substr(0, 300));
    body_bytes.push_back(f.body.size());
    reply_bytes.push_back(f.header_bytes + f.body.size());
    if (e.path == "/api/supervisor" &&
        f.body.find("\"workers\":" + std::to_string(registered)) == std::string::npos)
      die("GET /api/supervisor does not count " + std::to_string(registered) + " workers: " + f.body);
    if (e.path == "/metrics") {
      std::istringstream in(f.body);
      std::string line;
      while (std::getline(in, line))
        if (!line.empty() && line[0] != '#') ++metric_series;
    }
  }

  Load load(sv, iters);
  load.start();
  std::this_thread::sleep_for(1s);  // the load and the interval workers' first runs settle

  // -- rounds ------------------------------------------------------------------------------
  // Phase 0 is idle, 1.. are the endpoints; samples[phase][round].
  const int phases = 1 + static_cast<int>(endpoints.size());
  std::vector<std::vector<Sample>> samples(static_cast<std::size_t>(phases));
  bool failed = false;
  std::vector<std::string> failures;
  const auto stats0 = server.stats();
  auto wrk_args = [&](const std::string& path) {
    return std::vector<std::string>{"-t" + std::to_string(cfg.threads),
                                    "-c" + std::to_string(cfg.connections),
                                    "-d" + std::to_string(cfg.duration_s) + "s",
                                    "--timeout",
                                    "10s",
                                    "--latency",
                                    base_url + path};
  };
  for (int r = 0; r < cfg.rounds; ++r) {
    for (int k = 0; k < phases; ++k) {
      const int ph = (k + r) % phases;  // rotate: no phase always follows the same one
      Sample s;
      const std::uint64_t d0 = load.done();
      const auto t0 = clk::now();
      if (ph == 0) {
        std::this_thread::sleep_for(std::chrono::seconds(cfg.duration_s));
      } else {
        const Endpoint& e = endpoints[static_cast<std::size_t>(ph - 1)];
        s.wrk = parse_wrk(run(wrk, wrk_args(e.path)));
        std::string why;
        if (!e.baseline && s.wrk.non2xx > 0) why = std::to_string(s.wrk.non2xx) + " non-2xx/3xx responses";
        if (e.baseline && s.wrk.non2xx != s.wrk.requests)
          why = std::to_string(s.wrk.requests - s.wrk.non2xx) + " replies that were not the expected 404";
        if (s.wrk.socket_errors() > 0)
          why += (why.empty() ? "" : ", ") + std::string("socket errors (connect ") +
                 std::to_string(s.wrk.e_connect) + ", read " + std::to_string(s.wrk.e_read) + ", write " +
                 std::to_string(s.wrk.e_write) + ", timeout " + std::to_string(s.wrk.e_timeout) + ")";
        if (s.wrk.requests == 0) why += (why.empty() ? "" : ", ") + std::string("no request completed");
        if (!why.empty()) {
          failed = true;
          failures.push_back("round " + std::to_string(r + 1) + ", GET " + e.path + ": " + why);
          std::fprintf(stderr, "bench_http: FAIL: round %d, GET %s: %s\nwrk said:\n%s\n", r + 1,
                       e.path.c_str(), why.c_str(), s.wrk.output.c_str());
        }
      }
      const auto t1 = clk::now();
      s.load_tps = double(load.done() - d0) / secs(t1 - t0);
      s.gaps = probe.gaps(t0, t1);
      std::fprintf(stderr, "  round %d/%d %-30s %s\n", r + 1, cfg.rounds,
                   ph == 0 ? "idle" : endpoints[static_cast<std::size_t>(ph - 1)].label.c_str(),
                   ph == 0 ? ("load " + fmt_rate(s.load_tps) + " tasks/s").c_str()
                           : (fmt_rate(s.wrk.rps) + " req/s, p99 " + num("%.2f", s.wrk.p99_ms) +
                              " ms, load " + fmt_rate(s.load_tps) + " tasks/s")
                                 .c_str());
      samples[static_cast<std::size_t>(ph)].push_back(std::move(s));
    }
  }
  const auto stats1 = server.stats();
  const std::uint64_t load_done = load.done();
  load.stop();

  // -- in process: what one /metrics reply costs without HTTP ----------------------------
  auto time_calls = [](int reps, auto&& f) {
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      const auto t0 = clk::now();
      f();
      t.push_back(ms(clk::now() - t0));
    }
    return median(t);
  };
  std::size_t sink = 0;
  const double prom_ms = time_calls(30, [&] { sink += atask::http::prometheus_text(sv).size(); });
  const double snap_ms = time_calls(30, [&] {
    sink += sv.workers().size();
    sink += sv.info().active_tasks;
    sink += sv.task_metrics().submitted[0][0];
  });
  const double workers_ms = time_calls(30, [&] { sink += sv.workers().size(); });

  const std::uint64_t ev_total = ev_runs.load(), iv_total = iv_runs.load(), q_total = q_items.load(),
                      bg_total = bg_runs.load();
  sv.stop();
  const std::string load_end = loadavg();

  // -- report --------------------------------------------------------------------------------
  const std::size_t R = static_cast<std::size_t>(cfg.rounds);
  auto med = [&](int ph, auto get) {
    std::vector<double> v;
    for (const auto& s : samples[static_cast<std::size_t>(ph)]) v.push_back(get(s));
    return median(v);
  };
  auto ratio_med = [&](int ph, int base, auto get) {  // median over rounds of (phase / same round's base)
    std::vector<double> v;
    for (std::size_t r = 0; r < R; ++r) {
      const double b = get(samples[static_cast<std::size_t>(base)][r]);
      v.push_back(b > 0 ? get(samples[static_cast<std::size_t>(ph)][r]) / b : 0);
    }
    return median(v);
  };
  auto gap_p = [&](int ph, double q) {  // probe gaps of every round pooled
    std::vector<double> g;
    for (const auto& s : samples[static_cast<std::size_t>(ph)])
      g.insert(g.end(), s.gaps.begin(), s.gaps.end());
    return q >= 1 ? (g.empty() ? 0 : *std::max_element(g.begin(), g.end())) : percentile(g, q);
  };
  auto rps = [](const Sample& s) { return s.wrk.rps; };
  auto tps = [](const Sample& s) { return s.load_tps; };

  std::printf(
      "\natask HTTP control plane under load: %zu workers (%d event, %d interval incl. a 10 ms probe, "
      "%d queue<int>, %d async pollers), background load of %d outstanding ~3 us tasks at low priority "
      "(1 producer thread), pool_size 2 + reserve_normal 1 + reserve_high 1\n",
      registered, n_event, n_interval, n_queue, n_async, Load::outstanding);
  std::printf(
      "wrk: `wrk -t%d -c%d -d%ds --timeout 10s --latency http://127.0.0.1:<port><path>`, %d interleaved "
      "rounds, "
      "medians; load average at start %s, at end %s (%u cores)\n",
      cfg.threads, cfg.connections, cfg.duration_s, cfg.rounds, load_start.c_str(), load_end.c_str(),
      std::thread::hardware_concurrency());
  std::printf("command: %s\n\n", command.c_str());
  std::printf(
      "| endpoint | reply bytes | req/s | vs 404 | p50 ms | p99 ms | load tasks/s | load vs idle | "
      "timer gap p99 / max ms |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  std::printf("| idle (no HTTP) | | | | | | %s | 1.00x | %.1f / %.1f |\n", fmt_rate(med(0, tps)).c_str(),
              gap_p(0, .99), gap_p(0, 1));
  for (int ph = 1; ph < phases; ++ph) {
    const auto& e = endpoints[static_cast<std::size_t>(ph - 1)];
    std::printf("| %s | %zu | %s | %s | %.2f | %.2f | %s | %.2fx | %.1f / %.1f |\n", e.label.c_str(),
                reply_bytes[static_cast<std::size_t>(ph - 1)], fmt_rate(med(ph, rps)).c_str(),
                e.baseline ? "1.00x" : num("%.3fx", ratio_med(ph, 1, rps)).c_str(),
                med(ph, [](const Sample& s) { return s.wrk.p50_ms; }),
                med(ph, [](const Sample& s) { return s.wrk.p99_ms; }), fmt_rate(med(ph, tps)).c_str(),
                ratio_med(ph, 0, tps), gap_p(ph, .99), gap_p(ph, 1));
  }
  std::printf(
      "\n  reply bytes: status line + headers + body of one GET (body: /api/nope %zu, /api/supervisor %zu, "
      "/api/workers %zu, /metrics %zu; %zu series in /metrics)\n"
      "  vs 404: req/s / req/s of GET /api/nope in the same round (median of rounds); load vs idle: "
      "background "
      "tasks/s / the same round's idle phase\n"
      "  timer gap: gaps between runs of a 10 ms interval worker (its timer is on the supervisor's "
      "io_context "
      "thread, which also serves HTTP), all rounds pooled; 10.0 = on time\n"
      "  in process, no HTTP: prometheus_text() %.2f ms per call (snapshots info()+task_metrics()+workers() "
      "%.2f ms, of which workers() %.2f ms); 1000/that = %.0f calls/s on one thread\n",
      body_bytes[0], body_bytes[1], body_bytes[2], body_bytes[3], metric_series, prom_ms, snap_ms, workers_ms,
      prom_ms > 0 ? 1000 / prom_ms : 0);
  std::printf(
      "  server stats over the rounds: %llu requests, %llu connections accepted, %llu refused, %llu "
      "timeouts, %llu client errors (the 404s); wrk counted %ld requests\n",
      (unsigned long long)(stats1.requests - stats0.requests),
      (unsigned long long)(stats1.connections_accepted - stats0.connections_accepted),
      (unsigned long long)(stats1.connections_refused - stats0.connections_refused),
      (unsigned long long)(stats1.timeouts - stats0.timeouts),
      (unsigned long long)(stats1.client_errors - stats0.client_errors), [&] {
        long t = 0;
        for (int ph = 1; ph < phases; ++ph)
          for (const auto& s : samples[static_cast<std::size_t>(ph)]) t += s.wrk.requests;
        return t;
      }());
  std::printf(
      "  worker activity: %llu event runs, %llu interval runs (%llu puts refused: queue full), %llu "
      "queue items, %llu poller runs; %llu load tasks done, %llu submits refused; spin %llu iters/task\n",
      (unsigned long long)ev_total, (unsigned long long)iv_total, (unsigned long long)iv_put_full.load(),
      (unsigned long long)q_total, (unsigned long long)bg_total, (unsigned long long)load_done,
      (unsigned long long)load.submit_errors(), (unsigned long long)iters);
  std::printf("  per round (req/s | load tasks/s):");
  for (std::size_t r = 0; r < R; ++r) {
    std::printf(" [%zu] idle %s", r + 1, fmt_rate(samples[0][r].load_tps).c_str());
    for (int ph = 1; ph < phases; ++ph)
      std::printf(", %s %s|%s", endpoints[static_cast<std::size_t>(ph - 1)].path.c_str(),
                  fmt_rate(samples[static_cast<std::size_t>(ph)][r].wrk.rps).c_str(),
                  fmt_rate(samples[static_cast<std::size_t>(ph)][r].load_tps).c_str());
    std::printf(";");
  }
  std::printf("\n");
  for (const auto& f : failures) std::printf("  FAILED: %s\n", f.c_str());
  std::printf("\n");

  // -- JSON, one line ------------------------------------------------------------------------
  std::string j = "{\"bench\":\"http\",\"workers\":" + std::to_string(registered) +
                  ",\"duration_s\":" + std::to_string(cfg.duration_s) +
                  ",\"connections\":" + std::to_string(cfg.connections) +
                  ",\"threads\":" + std::to_string(cfg.threads) +
                  ",\"rounds\":" + std::to_string(cfg.rounds) +
                  ",\"idle_load_tps\":" + num("%.0f", med(0, tps)) + ",\"endpoints\":{";
  for (int ph = 1; ph < phases; ++ph) {
    const auto& e = endpoints[static_cast<std::size_t>(ph - 1)];
    j += (ph > 1 ? "," : "") + std::string("\"") + e.path +
         "\":{\"reply_bytes\":" + std::to_string(reply_bytes[static_cast<std::size_t>(ph - 1)]) +
         ",\"rps\":" + num("%.1f", med(ph, rps)) + ",\"ratio_vs_404\":" + num("%.4f", ratio_med(ph, 1, rps)) +
         ",\"p50_ms\":" + num("%.3f", med(ph, [](const Sample& s) { return s.wrk.p50_ms; })) +
         ",\"p99_ms\":" + num("%.3f", med(ph, [](const Sample& s) { return s.wrk.p99_ms; })) +
         ",\"transfer_MiBps\":" +
         num("%.2f", med(ph, [](const Sample& s) { return s.wrk.transfer_bps / 1048576; })) +
         ",\"load_tps\":" + num("%.0f", med(ph, tps)) +
         ",\"load_vs_idle\":" + num("%.4f", ratio_med(ph, 0, tps)) +
         ",\"timer_gap_p99_ms\":" + num("%.2f", gap_p(ph, .99)) +
         ",\"timer_gap_max_ms\":" + num("%.2f", gap_p(ph, 1)) + "}";
  }
  j += "},\"metric_series\":" + std::to_string(metric_series) +
       ",\"prometheus_text_ms\":" + num("%.3f", prom_ms) + ",\"snapshots_ms\":" + num("%.3f", snap_ms) +
       ",\"ok\":" + (failed ? "false" : "true") + ",\"loadavg\":{\"start\":\"" + load_start +
       "\",\"end\":\"" + load_end + "\"}}";
  std::printf("%s\n", j.c_str());
  static_cast<void>(sink);
  if (failed) std::fprintf(stderr, "bench_http: FAILED (%zu problem(s), see above)\n", failures.size());
  return failed ? 1 : 0;
}
