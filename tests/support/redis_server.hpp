#pragma once
// A redis-server of the test's own: started on a free loopback port in a
// temporary folder (config, log, AOF), stopped and removed at scope exit.
// Nothing assumes a system Redis. Throws (failing the test with the log's
// tail) when redis-server is missing or does not answer PING in time.
// The server gets SIGTERM when the thread that started it ends (the test
// process dying included): start a RedisServer on the test's own thread.

#include "fixtures.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test {

class RedisServer {
 public:
  // `extra` lines go into redis.conf (e.g. "appendonly yes").
  explicit RedisServer(std::vector<std::string> extra = {}) : extra_(std::move(extra)) { start(); }
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  unsigned short port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  const std::filesystem::path& dir() const { return dir_.path(); }

  // SIGKILL, as a crash would (the data dir stays for a restart).
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    reap(std::chrono::seconds(10));
  }
  // A fresh server on the same port and folder (an AOF there is replayed).
  void restart() {
    stop();
    launch();
  }

 private:
  static unsigned short free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd >= 0) ::close(fd);
      throw std::runtime_error("RedisServer: no free port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
  }

  void start() {
    for (int attempt = 0;; ++attempt) {
      port_ = free_port();
      try {
        launch();
        return;
      } catch (const std::exception&) {
        if (attempt == 4) throw;  // the port was taken between the probe and the bind, five times
      }
    }
  }

  // redis-server on the PATH, found before fork(): the child only execs.
  static std::string binary() {
    const char* path = std::getenv("PATH");
    std::string p = path ? path : "/usr/bin:/bin";
    for (std::size_t b = 0; b <= p.size();) {
      const std::size_t e = std::min(p.find(':', b), p.size());
      const std::string cand = p.substr(b, e - b) + "/redis-server";
      if (::access(cand.c_str(), X_OK) == 0) return cand;
      b = e + 1;
    }
    throw std::runtime_error("RedisServer: redis-server is not installed (scripts/setup.sh installs it)");
  }

  void launch() {
    const std::string exe = binary();
    const auto conf = dir() / "redis.conf";
    {
      std::ofstream f(conf);
      f << "port " << port_ << "\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
        << "dir " << dir().string() << "\nlogfile " << (dir() / "redis.log").string() << "\n"
        << "save \"\"\nappendonly no\nmaxmemory-policy noeviction\n";
      for (const auto& l : extra_) f << l << "\n";
    }
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("RedisServer: fork failed");
    if (pid_ == 0) {
      // A test that crashes (an abort under a sanitizer, say) never runs
      // the destructor: the server goes with the test's thread instead of
      // staying on, orphaned, in its temporary folder.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(0);  // the test died before prctl
      ::execl(exe.c_str(), "redis-server", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("RedisServer: redis-server exited at start (" +
                                 std::string(WIFEXITED(status) && WEXITSTATUS(status) == 127
                                                 ? "not installed: scripts/setup.sh installs redis-server"
                                                 : "see the log") +
                                 "): " + log_tail());
      }
      if (pings()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop();
    throw std::runtime_error("RedisServer: no PONG on port " + std::to_string(port_) +
                             " within 10 s: " + log_tail());
  }

  // One PING on a fresh connection: "+PONG" (or "-NOAUTH": up, with a password).
  bool pings() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port_);
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      timeval tv{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      const char ping[] = "PING\r\n";
      char buf[16] = {};
      ok = ::write(fd, ping, sizeof ping - 1) == static_cast<ssize_t>(sizeof ping - 1) &&
           ::read(fd, buf, sizeof buf - 1) >= 5 &&
           (std::string(buf).rfind("+PONG", 0) == 0 || std::string(buf).rfind("-NOAUTH", 0) == 0);
    }
    ::close(fd);
    return ok;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!reap(std::chrono::seconds(10))) {
      ::kill(pid_, SIGKILL);
      reap(std::chrono::seconds(10));
    }
  }

  // Waits for the server's exit on a pidfd (readable once it has exited),
  // then reaps it; false when it is still running after `limit`.
  bool reap(std::chrono::seconds limit) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      int r;
      while ((r = ::poll(&p, 1, static_cast<int>(limit.count() * 1000))) < 0 && errno == EINTR) {
      }
      ::close(fd);
      if (r <= 0) return false;  // still running after `limit` (or poll failed)
    }
    // Exited (or no pidfd: wait without a deadline).
    if (::waitpid(pid_, nullptr, 0) != pid_) return false;
    pid_ = -1;
    return true;
  }

  std::string log_tail() const {
    std::ifstream f(dir() / "redis.log");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string s = ss.str();
    return s.size() > 600 ? s.substr(s.size() - 600) : s;
  }

  std::vector<std::string> extra_;
  TempDir dir_;
  unsigned short port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace test
