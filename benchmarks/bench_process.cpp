// Process-pool benchmarks, each next to its physical floor measured in the
// same run:
//  1. raw round trip between two processes: a 16-byte message over an
//     AF_UNIX SOCK_STREAM socketpair (what the pool uses) to a forked echo
//     child and back, one at a time, p50/p99;
//     1b. the same with the parent spinning up to 50 us for the reply before
//     it blocks, as TaskHandle::get() waits: the fair floor for 2;
//  2. process task round trip, one at a time: sv.submit({},
//     atask::process(&trivial), i).get(), p50/p99; samples of 1 and 2 are
//     taken in interleaved rounds;
//  3. ceiling: pipelined echo with 2 children, 64 messages of 16 bytes
//     outstanding per child, one poll() loop in the parent: messages/s.
//     The ceiling the target uses: one write() per message in the parent,
//     children that read and answer one message at a time (a request/reply
//     worker, like a pool child); also shown: the same with writes coalesced
//     on both sides (a byte stream: the socket's raw bandwidth in 16-byte
//     units), and with 1 message outstanding per child (the pool's shape:
//     one task per child at a time);
//  4. throughput of trivial process tasks with processes.pool_size = 2:
//     submit all (handles kept), then wait for all; also with at most 1,000
//     in flight; runs alternate with those of 3, medians;
//  5. replacing a crashed child (processes.pool_size = 1): a task that calls
//     std::abort() fails with ChildCrashed (t0), then a trivial task is
//     submitted and waited for (t1): t1 - t0 = crash report -> re-fork ->
//     first round trip; next to the normal round trip on the same pool and
//     to a raw fork+echo (a small process forks a child that echoes one
//     message and exits).
// The echo children and both supervisors (their fork servers) are forked at
// the top of main, while the process is single-threaded. Prints a table,
// then one JSON object on the last line. Targets are printed, never asserted.
//
// Usage: bench_process [--quick]

#include "support.hpp"

#include <atask/atask.hpp>

#include <spdlog/details/log_msg.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace bench;
using namespace std::chrono_literals;

// -- the process functions ------------------------------------------------------------
int trivial(int x) {
  return x + 1;
}

int crash(int) {
  // No core file: this measures the crash report and the re-fork, not a
  // core dump (which ulimit -c / core_pattern would make anything from free
  // to seconds).
  rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
  std::abort();
}

namespace {

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto c = line.find(':');
      return c == std::string::npos ? line : line.substr(c + 2);
    }
  return "unknown CPU";
}

int thread_count() {
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::write(fd, p, n);
    if (r > 0) {
      p += r;
      n -= static_cast<std::size_t>(r);
    } else if (!(r < 0 && errno == EINTR)) {
      return false;
    }
  }
  return true;
}

bool read_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r > 0) {
      p += r;
      n -= static_cast<std::size_t>(r);
    } else if (!(r < 0 && errno == EINTR)) {
      return false;
    }
  }
  return true;
}

// -- echo children (the baselines' other end) --------------------------------------------
struct Echo {
  pid_t pid = -1;
  int fd = -1;  // the parent's end
};
enum class EchoKind { message, stream, fork };
std::vector<Echo> echoes;  // [0], [1]: message; [2], [3]: stream; [4]: fork

void end_echoes() {
  for (auto& e : echoes) {
    if (e.fd >= 0) ::close(e.fd);
    if (e.pid > 0) {
      ::kill(e.pid, SIGKILL);
      while (::waitpid(e.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    e = {};
  }
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "\nbench_process: %s\n", what.c_str());
  std::fflush(stderr);
  end_echoes();
  std::_Exit(3);  // the fork servers see EOF and take their children with them
}

constexpr std::size_t msg_size = 16;

// Until EOF:
//  - message: one message (msg_size bytes) read, then written back - a
//    request/reply worker's shape, as a pool child's;
//  - stream: whatever arrived read and written back at once;
//  - fork: one message read, then a fresh child forked that writes it back
//    and exits, and reaped - the floor of "fork a replacement, then its
//    first round trip", from a small single-threaded process like the fork
//    server.
[[noreturn]] void echo_main(int fd, EchoKind kind) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  ::prctl(PR_SET_NAME,
          kind == EchoKind::message  ? "bench-echo-msg"
          : kind == EchoKind::stream ? "bench-echo-strm"
                                     : "bench-echo-fork",
          0, 0, 0);
  static char buf[64 * 1024];
  for (;;) {
    if (kind == EchoKind::message) {
      if (!read_all(fd, buf, msg_size) || !write_all(fd, buf, msg_size)) ::_exit(0);
    } else if (kind == EchoKind::fork) {
      if (!read_all(fd, buf, msg_size)) ::_exit(0);
      const pid_t p = ::fork();
      if (p == 0) ::_exit(write_all(fd, buf, msg_size) ? 0 : 1);
      if (p < 0) ::_exit(1);  // the parent sees EOF
      while (::waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
      }
    } else {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !write_all(fd, buf, static_cast<std::size_t>(n))) ::_exit(0);
    }
  }
}

Echo fork_echo(EchoKind kind) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    die(std::string("socketpair: ") + std::strerror(errno));
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) die(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (::getppid() != parent) ::_exit(0);
    ::close(sv[0]);
    for (auto& e : echoes) ::close(e.fd);
    echo_main(sv[1], kind);
  }
  ::close(sv[1]);
  return {pid, sv[0]};
}

// One message to the echo child and back.
double echo_round_trip_us(int fd) {
  char out[msg_size] = "atask-roundtrip", in[msg_size];
  const auto t0 = clk::now();
  if (!write_all(fd, out, msg_size) || !read_all(fd, in, msg_size)) die("echo child: write/read failed");
  return us(clk::now() - t0);
}

// The same, with the parent waiting the way TaskHandle::get() does: it
// spins up to 50 us for the reply before it blocks in read(). The fair
// floor for atask's round trip, whose waiter spins the same way.
double echo_round_trip_spin_us(int fd) {
  char out[msg_size] = "atask-roundtrip", in[msg_size];
  const auto t0 = clk::now();
  if (!write_all(fd, out, msg_size)) die("echo child: write failed");
  std::size_t got = 0;
  while (got < msg_size && clk::now() - t0 < std::chrono::microseconds(50)) {
    const ssize_t r = ::recv(fd, in + got, msg_size - got, MSG_DONTWAIT);
    if (r > 0) got += static_cast<std::size_t>(r);
  }
  if (got < msg_size && !read_all(fd, in + got, msg_size - got)) die("echo child: read failed");
  return us(clk::now() - t0);
}

// `total` messages over two echo children (equal shares), `window` of them
// outstanding per child; one poll() loop: each read takes everything that
// arrived, and as many messages as came back go out again, each in its own
// write() (to children that echo one message at a time), or (`stream`) all
// in one write() (to children that echo whatever arrived).
double pipelined_msgs_per_s(int window, long total, bool stream) {
  struct S {
    int fd;
    long quota, sent = 0, received = 0;
    std::size_t partial = 0;  // bytes of a message not complete yet
  };
  std::vector<S> ss;
  for (std::size_t i = stream ? 2 : 0, e = i + 2; i < e; ++i) ss.push_back({echoes[i].fd, total / 2});
  std::vector<char> out(static_cast<std::size_t>(window) * msg_size, 'm');
  std::vector<char> in(64 * 1024);
  std::vector<pollfd> pf(ss.size());
  auto send = [&](S& s, long k) {
    if (stream) {
      if (!write_all(s.fd, out.data(), static_cast<std::size_t>(k) * msg_size))
        die("echo child: write failed");
    } else {
      for (long j = 0; j < k; ++j)
        if (!write_all(s.fd, out.data(), msg_size)) die("echo child: write failed");
    }
    s.sent += k;
  };
  const auto t0 = clk::now();
  for (auto& s : ss) send(s, std::min<long>(window, s.quota));
  for (;;) {
    std::size_t open = 0;
    for (std::size_t i = 0; i < ss.size(); ++i) {
      pf[i] = {ss[i].fd, static_cast<short>(ss[i].received < ss[i].quota ? POLLIN : 0), 0};
      open += ss[i].received < ss[i].quota;
    }
    if (open == 0) break;
    if (::poll(pf.data(), pf.size(), 10'000) <= 0) die("echo children: poll() failed or timed out");
    for (std::size_t i = 0; i < ss.size(); ++i) {
      if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto& s = ss[i];
      const ssize_t r = ::read(s.fd, in.data(), in.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) die("echo child: read failed");
      const std::size_t bytes = s.partial + static_cast<std::size_t>(r);
      const long msgs = static_cast<long>(bytes / msg_size);
      s.partial = bytes % msg_size;
      s.received += msgs;
      const long k = std::min(msgs, s.quota - s.sent);
      if (k > 0) send(s, k);
    }
  }
  long done = 0;
  for (auto& s : ss) done += s.received;
  return done / secs(clk::now() - t0);
}

// -- the library's log: printed, except the crash reports section 5 causes on purpose ---
class LogSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  long total = 0, crash_reports = 0;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    ++total;
    const std::string_view text(msg.payload.data(), msg.payload.size());
    if (msg.level == spdlog::level::warn &&
        text.find("crashed: killed by signal 6") != std::string_view::npos) {
      ++crash_reports;
      return;
    }
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::fwrite(buf.data(), 1, buf.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

template <class H>
int value_of(const H& h, const char* what) {
  try {
    return h.get_for(60s);
  } catch (const atask::TimeoutError&) {
    die(std::string("LIBRARY PROBLEM: ") + what + ": task #" + std::to_string(h.id()) +
        " did not finish within 60 s (status " + std::string(atask::to_string(h.status())) + ")");
  } catch (const std::exception& e) {
    die(std::string("LIBRARY PROBLEM: ") + what + ": task #" + std::to_string(h.id()) +
        " failed: " + e.what());
  }
}

// -- table ---------------------------------------------------------------------------
struct Row {
  std::string metric, atask, base, ratio, target, met;
};
std::vector<Row> rows;

std::string join(const std::vector<double>& v) {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : " ") + num("%.0f", x);
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int rtt_rounds = quick ? 2 : 5;             // interleaved rounds of 1 and 2
  const int pipe_samples = quick ? 5'000 : 20'000;  // section 1, over all rounds
  const int task_samples = quick ? 2'000 : 10'000;  // section 2, over all rounds
  const long ceiling_msgs = quick ? 50'000 : 200'000;
  const long lockstep_msgs = quick ? 20'000 : 50'000;
  const long tasks = quick ? 20'000 : 100'000;
  const int in_flight = 1'000;
  const int runs = quick ? 2 : 3;  // sections 3 and 4, alternating
  const int crashes = quick ? 20 : 50;
  const int normal_per_crash = 5;
  const int fresh_per_crash = 3;
  const int window = 64;

  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  const std::string load_start = loadavg();

  // ============ single-threaded: echo children, then both supervisors ==================
  for (auto kind : {EchoKind::message, EchoKind::message, EchoKind::stream, EchoKind::stream, EchoKind::fork})
    echoes.push_back(fork_echo(kind));
  auto sink = std::make_shared<LogSink>();
  auto log = std::make_shared<spdlog::logger>("bench", sink);
  log->set_level(spdlog::level::warn);
  const int threads_at_sv1 = thread_count();
  atask::Supervisor sv1({.id = "bench", .logger = log, .processes = {.pool_size = 2}});
  const int threads_at_sv2 = thread_count();
  atask::Supervisor sv2({.id = "crash", .logger = log, .processes = {.pool_size = 1}});

  // ============ 1 + 2. round trips, interleaved ========================================
  std::vector<double> pipe_us, spin_us, task_us;
  pipe_us.reserve(pipe_samples);
  spin_us.reserve(pipe_samples);
  task_us.reserve(task_samples);
  sv1.start();
  for (int i = 0; i < 1'000; ++i) echo_round_trip_us(echoes[0].fd);
  for (int i = 0; i < 200; ++i)
    if (value_of(sv1.submit({}, atask::process(&trivial), i), "warm-up") != i + 1)
      die("LIBRARY PROBLEM: wrong result");
  long wrong = 0;
  for (int r = 0; r < rtt_rounds; ++r) {
    for (int i = 0; i < pipe_samples / rtt_rounds; ++i) pipe_us.push_back(echo_round_trip_us(echoes[0].fd));
    for (int i = 0; i < pipe_samples / rtt_rounds; ++i)
      spin_us.push_back(echo_round_trip_spin_us(echoes[0].fd));
    for (int i = 0; i < task_samples / rtt_rounds; ++i) {
      const auto t0 = clk::now();
      auto h = sv1.submit({}, atask::process(&trivial), i);
      const int v = value_of(h, "round trip");
      task_us.push_back(us(clk::now() - t0));
      wrong += v != i + 1;
    }
  }

  // ============ 3 + 4. ceiling and throughput, alternating runs =========================
  std::vector<double> ceiling, coalesced, lockstep, all_at_once, bounded;
  long long sum = 0, want_sum = 0;
  for (int r = 0; r < runs; ++r) {
    ceiling.push_back(pipelined_msgs_per_s(window, ceiling_msgs, false));
    coalesced.push_back(pipelined_msgs_per_s(window, ceiling_msgs, true));
    lockstep.push_back(pipelined_msgs_per_s(1, lockstep_msgs, false));
    {
      std::vector<atask::TaskHandle<int>> hs;
      hs.reserve(static_cast<std::size_t>(tasks));
      const auto t0 = clk::now();
      for (long i = 0; i < tasks; ++i)
        hs.push_back(sv1.submit({}, atask::process(&trivial), static_cast<int>(i)));
      for (auto& h : hs) sum += value_of(h, "throughput (all at once)");
      all_at_once.push_back(tasks / secs(clk::now() - t0));
      want_sum += static_cast<long long>(tasks) * (tasks + 1) / 2;
    }
    {
      std::deque<atask::TaskHandle<int>> hs;
      const auto t0 = clk::now();
      for (long i = 0; i < tasks; ++i) {
        if (static_cast<int>(hs.size()) == in_flight) {
          sum += value_of(hs.front(), "throughput (bounded)");
          hs.pop_front();
        }
        hs.push_back(sv1.submit({}, atask::process(&trivial), static_cast<int>(i)));
      }
      for (auto& h : hs) sum += value_of(h, "throughput (bounded)");
      hs.clear();
      bounded.push_back(tasks / secs(clk::now() - t0));
      want_sum += static_cast<long long>(tasks) * (tasks + 1) / 2;
    }
  }
  const auto info1 = sv1.info().processes;
  sv1.stop();

  // ============ 5. crashed child -> replacement ============================================
  std::vector<double> recover_us, detect_us, normal_us, fresh_fork_us;
  long not_crashed = 0;
  sv2.start();
  for (int i = 0; i < 50; ++i)
    if (value_of(sv2.submit({}, atask::process(&trivial), i), "warm-up") != i + 1)
      die("LIBRARY PROBLEM: wrong result");
  const auto before5 = sv2.info().processes;
  for (int k = 0; k < crashes; ++k) {
    const auto ts = clk::now();
    auto bad = sv2.submit({}, atask::process(&crash), k);
    clk::time_point t0;
    try {
      static_cast<void>(bad.get_for(60s));
      die("LIBRARY PROBLEM: the aborting task returned a result");
    } catch (const atask::ChildCrashed& e) {
      t0 = clk::now();
      not_crashed += e.signal() != SIGABRT;
    } catch (const atask::TimeoutError&) {
      die("LIBRARY PROBLEM: the aborting task #" + std::to_string(bad.id()) + " did not end within 60 s");
    } catch (const std::exception& e) {
      die(std::string("LIBRARY PROBLEM: the aborting task failed with something else than ChildCrashed: ") +
          e.what());
    }
    if (value_of(sv2.submit({}, atask::process(&trivial), k), "after a crash") != k + 1)
      die("LIBRARY PROBLEM: wrong result after a crash");
    const auto t1 = clk::now();
    detect_us.push_back(us(t0 - ts));
    recover_us.push_back(us(t1 - t0));
    for (int j = 0; j < normal_per_crash; ++j) {
      const auto n0 = clk::now();
      if (value_of(sv2.submit({}, atask::process(&trivial), j), "normal") != j + 1)
        die("LIBRARY PROBLEM: wrong result");
      normal_us.push_back(us(clk::now() - n0));
    }
    for (int j = 0; j < fresh_per_crash; ++j) fresh_fork_us.push_back(echo_round_trip_us(echoes[4].fd));
  }
  const auto info2 = sv2.info().processes;
  sv2.stop();

  // ============ cleanup: nothing of ours may outlive the run ================================
  end_echoes();
  std::vector<int> pids = info1.child_pids;
  pids.insert(pids.end(), info2.child_pids.begin(), info2.child_pids.end());
  pids.push_back(info1.fork_server_pid);
  pids.push_back(info2.fork_server_pid);
  int alive = 0;
  for (int p : pids)
    if (p > 0 && ::kill(p, 0) == 0) ++alive;
  int st = 0;
  const bool no_children = ::waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD;

  // ============ report =========================================================================
  const double pipe50 = percentile(pipe_us, .5), pipe99 = percentile(pipe_us, .99);
  const double spin50 = percentile(spin_us, .5), spin99 = percentile(spin_us, .99);
  const double task50 = percentile(task_us, .5), task99 = percentile(task_us, .99);
  const double ceil_m = median(ceiling), coal_m = median(coalesced), lock_m = median(lockstep);
  const double all_m = median(all_at_once), bnd_m = median(bounded);
  const double rec50 = percentile(recover_us, .5), rec99 = percentile(recover_us, .99);
  const double det50 = percentile(detect_us, .5), det99 = percentile(detect_us, .99);
  const double nor50 = percentile(normal_us, .5), nor99 = percentile(normal_us, .99);
  const double fork50 = percentile(fresh_fork_us, .5), fork99 = percentile(fresh_fork_us, .99);
  const std::uint64_t crashed5 = info2.crashed - before5.crashed, spawned5 = info2.spawned - before5.spawned;
  const bool sums_ok = sum == want_sum && wrong == 0 && not_crashed == 0;

  rows.push_back({"1. raw socketpair round trip p50 (us)", "", num("%.1f", pipe50), "", "", ""});
  rows.push_back({"   raw socketpair round trip p99 (us)", "", num("%.1f", pipe99), "", "", ""});
  rows.push_back({"1b. raw round trip, parent spins 50 us, p50 (us)", "", num("%.1f", spin50), "", "", ""});
  rows.push_back({"   raw round trip, parent spins 50 us, p99 (us)", "", num("%.1f", spin99), "", "", ""});
  rows.push_back({"2. process task round trip p50 (us)", num("%.1f", task50), num("%.1f", pipe50),
                  num("%.2fx", task50 / pipe50), "<= 3x", yes(task50 <= 3 * pipe50)});
  rows.push_back({"   p50 vs the spinning raw round trip (1b)", num("%.1f", task50), num("%.1f", spin50),
                  num("%.2fx", task50 / spin50), "<= 3x", yes(task50 <= 3 * spin50)});
  rows.push_back({"   process task round trip p99 (us)", num("%.1f", task99), num("%.1f", pipe99),
                  num("%.2fx", task99 / pipe99), "", ""});
  rows.push_back({"3. pipelined echo, 2 children, window 64 (msg/s)", "", num("%.0f", ceil_m), "", "", ""});
  rows.push_back({"   same, writes coalesced: byte stream (msg/s)", "", num("%.0f", coal_m), "", "", ""});
  rows.push_back({"   echo, 2 children, 1 at a time each (msg/s)", "", num("%.0f", lock_m), "", "", ""});
  rows.push_back({"4. tasks/s, all submitted then all waited", num("%.0f", all_m), num("%.0f", ceil_m),
                  num("%.1f%%", 100 * all_m / ceil_m), ">= 40%", yes(all_m >= 0.4 * ceil_m)});
  rows.push_back({"   tasks/s, at most 1000 in flight", num("%.0f", bnd_m), num("%.0f", ceil_m),
                  num("%.1f%%", 100 * bnd_m / ceil_m), "", ""});
  rows.push_back({"   all at once vs coalesced byte stream", num("%.0f", all_m), num("%.0f", coal_m),
                  num("%.1f%%", 100 * all_m / coal_m), "", ""});
  rows.push_back({"   all at once vs echo 1 at a time per child", num("%.0f", all_m), num("%.0f", lock_m),
                  num("%.1f%%", 100 * all_m / lock_m), "", ""});
  rows.push_back({"5. ChildCrashed -> next task done p50 (us)", num("%.1f", rec50), num("%.1f", nor50),
                  num("%.2fx", rec50 / nor50), "", ""});
  rows.push_back({"   ChildCrashed -> next task done p99 (us)", num("%.1f", rec99), num("%.1f", nor99),
                  num("%.2fx", rec99 / nor99), "", ""});
  rows.push_back({"   ChildCrashed -> next task vs raw fork+echo p50", num("%.1f", rec50),
                  num("%.1f", fork50), num("%.2fx", rec50 / fork50), "", ""});
  rows.push_back({"   ChildCrashed -> next task vs raw fork+echo p99", num("%.1f", rec99),
                  num("%.1f", fork99), num("%.2fx", rec99 / fork99), "", ""});
  rows.push_back({"   submit(abort) -> ChildCrashed p50 (us)", num("%.1f", det50), num("%.1f", nor50),
                  num("%.2fx", det50 / nor50), "", ""});
  rows.push_back({"   submit(abort) -> ChildCrashed p99 (us)", num("%.1f", det99), num("%.1f", nor99),
                  num("%.2fx", det99 / nor99), "", ""});

  utsname un{};
  ::uname(&un);
  const std::string load_end = loadavg();
  std::printf("\natask process-pool benchmarks (%s): %s\n", quick ? "quick" : "full", command.c_str());
  std::printf("  %s, %u hardware threads, %s %s; load average at start %s, at end %s\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), un.sysname, un.release, load_start.c_str(),
              load_end.c_str());
#ifdef NDEBUG
  const char* build = "NDEBUG";
#else
  const char* build = "assertions on";
#endif
  std::printf("  g++ %s, %s; threads when the supervisors were constructed: %d and %d (want 1)\n",
              __VERSION__, build, threads_at_sv1, threads_at_sv2);
  std::printf(
      "  1: %zu round trips of a %zu-byte message over an AF_UNIX SOCK_STREAM socketpair to a forked echo "
      "child, "
      "one at a time\n"
      "  2: %zu calls of sv.submit({}, atask::process(&trivial), i).get(), one at a time, "
      "processes.pool_size 2; "
      "1 and 2 in %d interleaved rounds after a warm-up\n"
      "  3: %ld messages of %zu bytes over 2 echo children, %d outstanding per child, one poll() loop, one "
      "write() "
      "per message, children answering one message at a time; 'coalesced': as many messages per write() as "
      "came back, children echoing whatever arrived; '1 at a time': %ld messages, 1 outstanding per child\n"
      "  4: %ld trivial process tasks per run, processes.pool_size 2, handles kept; 3 and 4 alternate, "
      "medians "
      "of %d runs\n"
      "  5: %d crashes, processes.pool_size 1: t0 = get() throws ChildCrashed, t1 = the next trivial task's "
      "get() "
      "returned; baselines: %d normal round trips after each recovery on the same pool, and %d raw "
      "'fork+echo': a "
      "small single-threaded process forks a fresh child that echoes one message (socketpair) and exits. The "
      "aborting child's death is reported by the fork server (SIGCHLD -> control socket -> the supervisor's "
      "loop); t1 - t0 "
      "includes one task round trip\n\n",
      pipe_us.size(), msg_size, task_us.size(), rtt_rounds, ceiling_msgs, msg_size, window, lockstep_msgs,
      tasks, runs, crashes, normal_per_crash, fresh_per_crash);
  std::printf("%-50s %11s %11s %8s %8s %5s\n", "metric", "atask", "baseline", "ratio", "target", "met?");
  for (auto& r : rows)
    std::printf("%-50s %11s %11s %8s %8s %5s\n", r.metric.c_str(), r.atask.c_str(), r.base.c_str(),
                r.ratio.c_str(), r.target.c_str(), r.met.c_str());
  std::printf(
      "\n  runs: ceiling %s msg/s; coalesced %s msg/s; 1 at a time %s msg/s; all at once %s tasks/s; at most "
      "%d "
      "in flight %s tasks/s\n",
      join(ceiling).c_str(), join(coalesced).c_str(), join(lockstep).c_str(), join(all_at_once).c_str(),
      in_flight, join(bounded).c_str());
  std::printf(
      "  pool (size 2): completed %llu, spawned %llu, crashed %llu; pool (size 1) during 5: crashed %llu, "
      "spawned %llu (want %d and %d)\n"
      "  results %s; library log: %ld lines at warn or above, %ld of them the expected crash reports (others "
      "printed above)\n"
      "  after stop: %d of our pids still alive (want 0), children left unreaped: %s\n\n",
      (unsigned long long)info1.completed_total, (unsigned long long)info1.spawned,
      (unsigned long long)info1.crashed, (unsigned long long)crashed5, (unsigned long long)spawned5, crashes,
      crashes, sums_ok ? "ok" : "WRONG", sink->total, sink->crash_reports, alive,
      no_children ? "none" : "SOME");

  std::printf(
      "{\"bench\":\"process\",\"quick\":%s,"
      "\"pipe_round_trip_us\":{\"p50\":%.2f,\"p99\":%.2f,\"samples\":%zu,\"transport\":\"AF_UNIX SOCK_STREAM "
      "socketpair\"},\"spinning_pipe_round_trip_us\":{\"p50\":%.2f,\"p99\":%.2f},"
      "\"task_round_trip_us\":{\"p50\":%.2f,\"p99\":%.2f,\"samples\":%zu,\"p50_vs_pipe\":%.3f,"
      "\"p50_vs_spinning_pipe\":%.3f},"
      "\"ceiling_msgs_per_s\":{\"window64\":%.0f,\"window64_coalesced\":%.0f,\"window1\":%.0f},"
      "\"throughput_tasks_per_s\":{\"tasks\":%ld,\"all_at_once\":%.0f,\"in_flight_1000\":%.0f,"
      "\"all_at_once_vs_ceiling\":%.4f},"
      "\"crash\":{\"crashes\":%d,\"recover_us\":{\"p50\":%.1f,\"p99\":%.1f},\"detect_us\":{\"p50\":%.1f,"
      "\"p99\":%.1f},\"normal_round_trip_us\":{\"p50\":%.2f,\"p99\":%.2f},"
      "\"fresh_fork_echo_us\":{\"p50\":%.1f,\"p99\":%.1f}},"
      "\"results_ok\":%s,\"leftover_pids\":%d,\"runs\":%d,\"loadavg\":{\"start\":\"%s\",\"end\":\"%s\"}}\n",
      quick ? "true" : "false", pipe50, pipe99, pipe_us.size(), spin50, spin99, task50, task99,
      task_us.size(), task50 / pipe50, task50 / spin50, ceil_m, coal_m, lock_m, tasks, all_m, bnd_m,
      all_m / ceil_m, crashes, rec50, rec99, det50, det99, nor50, nor99, fork50, fork99,
      sums_ok ? "true" : "false", alive + (no_children ? 0 : 1), runs, load_start.c_str(), load_end.c_str());
  return sums_ok && alive == 0 && no_children ? 0 : 1;
}
