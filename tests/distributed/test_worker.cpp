// atask_test_worker: a real worker process for the kill tests
// (test_distributed_kill.cpp). It consumes "default" from the broker and
// records what its tasks do in <dir>/marks, one line per event, appended
// with one write() each so that lines of concurrent processes never mix.
//
//   atask_test_worker BROKER NAME DIR [--threads N] [--prefetch N]
//                     [--processes N] [--heartbeat MS] [--dead-after MS]
//                     [--beat LEASE_MS]   (a beat process instead: see below)
//
// Runs until SIGTERM or SIGINT (the supervisor's staged stop).
#include <atask/distributed/beat.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/process/process.hpp>
#include <atask/supervisor/supervisor.hpp>
#include <atask/tasks/registry.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string g_dir;  // set before the supervisor forks its fork server: children see it

void mark(const std::string& line) {
  const std::string l = line + "\n";
  const int fd = ::open((g_dir + "/marks").c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) std::abort();
  if (::write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) std::abort();
  ::close(fd);
}

std::string hold(std::string tag, int ms) {
  mark("start " + tag);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  mark("end " + tag);
  return tag;
}

// Runs in a child of the process pool.
std::string hold_child(std::string tag, int ms) {
  mark("start " + tag + " pid " + std::to_string(::getpid()));
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  mark("end " + tag);
  return tag;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: atask_test_worker BROKER NAME DIR [--threads N] [--prefetch N] [--processes N] "
                 "[--heartbeat MS] [--dead-after MS]\n";
    return 2;
  }
  const std::string broker = argv[1], name = argv[2];
  g_dir = argv[3];
  int threads = 2, processes = 0, beat_lease = 0;
  atask::distributed::ConsumerOptions co{.broker = broker, .name = name};
  co.block = std::chrono::milliseconds(200);
  for (int i = 4; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--threads")
      threads = v;
    else if (k == "--prefetch")
      co.prefetch = static_cast<std::size_t>(v);
    else if (k == "--processes")
      processes = v;
    else if (k == "--heartbeat")
      co.heartbeat = std::chrono::milliseconds(v);
    else if (k == "--dead-after")
      co.dead_after = std::chrono::milliseconds(v);
    else if (k == "--beat")
      beat_lease = v;
    else {
      std::cerr << "atask_test_worker: unknown option " << k << "\n";
      return 2;
    }
  }
  co.reap_every = co.heartbeat;

  atask::TaskRegistry tasks;
  tasks.add("mark", [](std::string tag) {
    mark("run " + tag);
    return tag;
  });
  tasks.add("hold", &hold);
  tasks.add("spin", [](std::string tag, int ms) {
    // CPU-bound, no system call until done: heartbeats must not depend on it.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    unsigned long x = 0;
    while (std::chrono::steady_clock::now() < until) x = x * 31 + 7;
    mark("end " + tag + (x == 42 ? "" : ""));
    return tag;
  });
  tasks.add("hold_child", atask::process(&hold_child));
  // A chain step: appends `add` to what the step before gave.
  tasks.add("append", [](std::string acc, std::string add, int ms) {
    mark("start " + add);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    mark("end " + add);
    return acc + add;
  });
  tasks.add("crash", [] { std::abort(); });  // takes the worker process down: a poison task
  // At most 50 starts a second across every worker process. Returns its
  // argument and when it ran by this machine's monotonic clock (ms), which
  // every process shares and no clock step moves.
  tasks.add("limited",
            [](std::int64_t n) {
              const auto now = std::chrono::steady_clock::now().time_since_epoch();
              return std::vector<std::int64_t>{
                  n, std::chrono::duration_cast<std::chrono::milliseconds>(now).count()};
            },
            {.limits = {.max_starts = 50, .per = std::chrono::seconds(1)}});

  if (beat_lease > 0) {
    // A beat process, nothing else: "pulse" sends "mark" every 200 ms.
    atask::Supervisor sv({.id = name, .pool_size = 1, .handle_signals = true});
    atask::distributed::Beat beat(
        sv, {{.name = "pulse", .every = std::chrono::milliseconds(200), .task = "mark", .args = {"pulse"}}},
        {.broker = broker, .name = name, .lease = std::chrono::milliseconds(beat_lease)});
    sv.start();
    sv.block();
    return 0;
  }

  atask::SupervisorOptions so{.id = name, .pool_size = threads, .handle_signals = true};
  so.processes.pool_size = processes;
  atask::Supervisor sv(so);
  atask::distributed::Consumer consumer(sv, tasks, co);
  sv.start();
  sv.block();
  return 0;
}
