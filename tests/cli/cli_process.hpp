#pragma once
// Running the atask program in tests: one process per Cli (stdin from a
// string, stdout and stderr into files), run_atask() to its end, and a
// Worker: `atask worker` with the example plugins, up once Redis lists it.
// For tests/cli/*.cpp, which get ATASK_CLI (the binary) from CMake.

#include <atask/distributed/client.hpp>

#include "fixtures.hpp"
#include "redis_server.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <fcntl.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace test::cli {

namespace json = boost::json;
namespace dist = atask::distributed;

inline const std::string plugin_dir = ATASK_TEST_PLUGIN_DIR;         // demo_reports.so, demo_tasks.so
inline const std::string broken_dir = ATASK_TEST_BROKEN_PLUGIN_DIR;  // five plugins that fail to load

// One run of the atask binary: stdin from a file holding `input`, stdout
// and stderr into files, ATASK_BROKER and ATASK_PLUGIN_FOLDERS removed from
// its environment. Killed (SIGKILL) and reaped at scope exit if still there.
class Cli {
 public:
  explicit Cli(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), ATASK_CLI);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "ATASK_BROKER=", 13) != 0 && std::strncmp(*e, "ATASK_PLUGIN_FOLDERS=", 21) != 0)
        env_.push_back(*e);
    env_.push_back(nullptr);
    std::ofstream(dir_.path() / "in") << input;
    const std::string in = (dir_.path() / "in").string(), out = (dir_.path() / "out").string(),
                      err = (dir_.path() / "err").string();
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test that crashes leaves no process behind
      const int i = ::open(in.c_str(), O_RDONLY), o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644),
                e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (i < 0 || o < 0 || e < 0) ::_exit(126);
      ::dup2(i, 0);
      ::dup2(o, 1);
      ::dup2(e, 2);
      ::execve(argv[0], argv.data(), env_.data());
      ::_exit(127);
    }
  }
  ~Cli() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;

  // The exit code (128 + N for signal N) once it has ended; nullopt while it runs.
  std::optional<int> poll() {
    if (pid_ > 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
      pid_ = -1;
      code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return code_;
  }
  // The exit code, waiting at most `limit`; then SIGKILL and -1.
  int wait(std::chrono::milliseconds limit = patience) {
    if (!eventually([&] { return poll().has_value(); }, limit)) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
      FAIL_CHECK("atask did not exit in time; stdout: " << out() << " stderr: " << err());
      return -1;
    }
    return *code_;
  }
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  std::string out() const { return read("out"); }
  std::string err() const { return read("err"); }

 private:
  std::string read(const char* name) const {
    std::ifstream f(dir_.path() / name);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  test::TempDir dir_;
  std::vector<char*> env_;
  pid_t pid_ = -1;
  std::optional<int> code_;
};

struct Result {
  int code = -1;
  std::string out, err;
};

// Runs atask to its end (bounded by the patience).
inline Result run_atask(std::vector<std::string> args, const std::string& input = "") {
  Cli c(std::move(args), input);
  const int code = c.wait();
  return {code, c.out(), c.err()};
}

inline json::value parse_json(const std::string& s) {
  boost::system::error_code ec;
  auto v = json::parse(s, ec);
  REQUIRE_MESSAGE(!ec, "not JSON: " << s);
  return v;
}

// `atask worker` with the example plugins, as a process of its own; up once
// Redis lists it. SIGKILLed at scope exit unless it has ended.
class Worker {
 public:
  Worker(const test::RedisServer& redis, std::string name, std::vector<std::string> extra = {})
      : name_(std::move(name)), proc_(args(redis, name_, std::move(extra))) {
    dist::Client client({.broker = redis.url()});
    REQUIRE_MESSAGE(eventually([&] {
                      if (proc_.poll()) return true;
                      const auto ws = client.workers();
                      return std::any_of(ws.begin(), ws.end(),
                                         [&](const auto& w) { return w.name == name_; });
                    }),
                    "worker " << name_ << " did not register; stderr: " << proc_.err());
    REQUIRE_MESSAGE(!proc_.poll(), "worker " << name_ << " exited at start: " << proc_.err());
    // Its start line comes once the supervisor has started (it may register first).
    REQUIRE(eventually([&] { return contains(proc_.out(), "\n"); }));
  }
  Cli& process() { return proc_; }

 private:
  static std::vector<std::string> args(const test::RedisServer& redis, const std::string& name,
                                       std::vector<std::string> extra) {
    std::vector<std::string> a{"worker", "--broker", redis.url(), "--plugin-dir", plugin_dir, "-n",
                               name,     "-c",       "2",         "--processes",  "1",        "-l",
                               "warn"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::string name_;
  Cli proc_;
};

}  // namespace test::cli
