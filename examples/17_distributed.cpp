// Distributed mode: one client process and two worker processes on one
// machine, through Redis (docs/distributed.md).
//
//   example_17_distributed                      # starts its own redis-server and two workers
//   example_17_distributed --broker redis://127.0.0.1:6379
//   example_17_distributed worker NAME BROKER   # what the two workers run
//
// The same TaskRegistry is compiled into the client and the workers: the
// client uses it for each task's queue and priority, the workers to run them.
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/supervisor/supervisor.hpp>
#include <atask/tasks/registry.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace dist = atask::distributed;

void define(atask::TaskRegistry& tasks) {
  tasks.add("word_count", [](std::string text) {
    std::istringstream in(text);
    int n = 0;
    for (std::string w; in >> w;) ++n;
    return n;
  });
  tasks.add("report", [](std::string title) { return "report '" + title + "' done"; },
            {.priority = atask::Priority::high});
  tasks.add("nap", [](int ms) {
    for (int i = 0; i < ms; ++i) {
      if (atask::this_task::stop_requested()) throw atask::TaskCanceled("nap interrupted");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
}

int run_worker(const std::string& name, const std::string& broker) {
  atask::TaskRegistry tasks;
  define(tasks);
  atask::Supervisor sv({.id = name, .pool_size = 2, .handle_signals = true});  // SIGTERM: staged stop
  dist::Consumer consumer(sv, tasks, {.broker = broker, .queues = {"default"}, .name = name});
  sv.start();
  sv.block();
  return 0;
}

// A free loopback port (the kernel's pick).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

pid_t spawn(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "worker") return run_worker(argv[2], argv[3]);

  std::string broker;
  pid_t redis = -1;
  std::filesystem::path dir;
  if (argc == 3 && std::string(argv[1]) == "--broker") {
    broker = argv[2];
  } else {  // a redis-server of our own, on a free port, in a temporary folder
    const int port = free_port();
    dir = std::filesystem::temp_directory_path() / ("atask-example-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    redis = spawn({"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", dir.string(), "--logfile", (dir / "redis.log").string()});
    broker = "redis://127.0.0.1:" + std::to_string(port);
  }

  const std::string self = "/proc/self/exe";
  std::vector<pid_t> workers{spawn({self, "worker", "w1", broker}), spawn({self, "worker", "w2", broker})};

  atask::TaskRegistry tasks;
  define(tasks);
  int rc = 0;
  try {
    // retry_for: Redis and the workers may still be starting.
    dist::Client client({.broker = broker, .retry_for = std::chrono::seconds(10), .registry = &tasks});
    std::vector<boost::json::array> texts{
        {"the quick brown fox"}, {"jumps over"}, {"the lazy dog"}, {"atask"}};
    auto counts = client.send_many<int>("word_count", texts);
    auto report = client.send<std::string>("report", {"Q4"});  // high priority (the registry's default)
    auto nap = client.send("nap", {60'000});

    for (std::size_t i = 0; i < counts.size(); ++i)
      std::cout << "word_count(" << texts[i][0] << ") = " << counts[i].get_for(std::chrono::seconds(20))
                << " on " << counts[i].worker() << "\n";
    std::cout << report.get_for(std::chrono::seconds(20)) << " on " << report.worker() << "\n";
    for (int i = 0; i < 500 && nap.status() == dist::RemoteStatus::queued; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    nap.cancel();  // running on a worker: it sees the stop request within a heartbeat
    try {
      nap.get_for(std::chrono::seconds(20));
    } catch (const atask::TaskCanceled& e) {
      std::cout << "nap: " << e.what() << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "example: " << e.what() << "\n";
    rc = 1;
  }
  for (pid_t w : workers) ::kill(w, SIGTERM);  // each hands back what it holds and leaves
  for (pid_t w : workers) ::waitpid(w, nullptr, 0);
  if (redis > 0) {
    ::kill(redis, SIGTERM);
    ::waitpid(redis, nullptr, 0);
    std::filesystem::remove_all(dir);
  }
  std::cout << (rc == 0 ? "done\n" : "failed\n");
  return rc;
}
