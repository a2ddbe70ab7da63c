#pragma once
// Fixtures for tests that need atask objects but are not about making them:
// supervisor options, a started supervisor that stops within the patience,
// block() with a time limit, and a temporary directory.

#include "support.hpp"

#include <atask/supervisor.hpp>

#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <source_location>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace test {

// Options for a supervisor named `id` (thread names, log lines, errors)
// with `pool_size` pool threads and a quiet logger.
inline atask::SupervisorOptions options(std::string id, int pool_size = 2) {
  return {.id = std::move(id), .pool_size = pool_size, .logger = quiet_logger()};
}

// A supervisor that a test needs running but is not about: constructed from
// `o` (with quiet_logger() when `o` names no logger) and started. It is an
// atask::Supervisor, so sv.submit(), sv.stop() and Supervisor& parameters
// work as before. A test about construction, start or destruction makes an
// atask::Supervisor itself.
//
// At scope exit it stops with each stage limited to the patience instead
// of the default 30 s warm + 10 s soft, and fails the test if that left a
// task running: a task that hangs fails the test instead of holding it
// until the CTest timeout. A stop the test made already is not repeated.
class StartedSupervisor : public atask::Supervisor {
 public:
  explicit StartedSupervisor(atask::SupervisorOptions o) : atask::Supervisor(quiet(std::move(o))) { start(); }
  ~StartedSupervisor() {
    const auto r = stop({.warm_timeout = patience, .soft_timeout = patience});
    if (!r.already_stopped && !r.abandoned.empty())
      FAIL_CHECK("supervisor '" << id() << "' abandoned " << r.abandoned.size()
                                << " task(s) still running at the end of the test (first: #"
                                << r.abandoned.front().id << " '" << r.abandoned.front().name << "')");
  }
  StartedSupervisor(const StartedSupervisor&) = delete;
  StartedSupervisor& operator=(const StartedSupervisor&) = delete;

 private:
  static atask::SupervisorOptions quiet(atask::SupervisorOptions o) {
    if (!o.logger) o.logger = quiet_logger();
    return o;
  }
};

// Supervisor::block() with a time limit: a shutdown that never ends aborts
// the test with a message instead of hanging until the CTest timeout.
inline atask::StopReport block_within(atask::Supervisor& sv, std::chrono::milliseconds limit = patience,
                                      std::source_location where = std::source_location::current()) {
  return call_within(
      "Supervisor::block()", [&] { return sv.block(); }, limit, where);
}

// A fresh, empty directory under the system temp dir, removed with all it
// holds at scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> n{0};
    path_ = std::filesystem::temp_directory_path() /
            ("atask-test-" + std::to_string(::getpid()) + "-" + std::to_string(++n) + "-" +
             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(path_);
  }
  // ATASK_KEEP_TEMP=1 keeps the folder (worker logs, Redis files) for a
  // look after the test.
  ~TempDir() {
    if (const char* keep = std::getenv("ATASK_KEEP_TEMP"); keep && *keep && std::string_view(keep) != "0") {
      std::fprintf(stderr, "kept %s\n", path_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace test
