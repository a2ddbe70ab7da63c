#pragma once
// Helpers shared by the test files: timed waits that fail instead of
// hanging, a silent logger, and small exception/string checks. The atask
// fixtures (a started supervisor, options, a temporary directory) are in
// fixtures.hpp.

#include <doctest/doctest.h>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <source_location>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace test {

using namespace std::chrono_literals;

// How long a test waits for something that should happen at once: a bug
// fails the wait instead of hanging the suite.
inline constexpr auto patience = 10s;

inline std::shared_ptr<spdlog::logger> quiet_logger() {
  auto log = std::make_shared<spdlog::logger>("test");
  log->set_level(spdlog::level::off);
  return log;
}

// The what() of the E that f throws; "<nothing thrown>" otherwise.
template <class E, class F>
std::string what_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<nothing thrown>";
}

inline bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

inline std::string thread_name() {
  char buf[16] = {};
  pthread_getname_np(pthread_self(), buf, sizeof buf);
  return buf;
}

// The threads of this process now (from /proc/self/task).
inline std::size_t thread_count() {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

// Waits (with patience) until pred() holds, checking every millisecond. For
// state that is updated after the event a test can see (bookkeeping on the
// supervisor's loop, counters of a server): it never sleeps and then
// asserts, and a bug fails the wait instead of hanging.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = patience) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// f.get() once f is ready, for a future of std::async. When it is not ready
// within `limit` this names `what` (and the caller's line) on stderr and
// aborts: failing the test would not do, as the future's destructor waits
// for its thread, which uses the test's objects, until the CTest timeout.
// (A std::promise's future needs no helper:
// REQUIRE(f.wait_for(patience) == std::future_status::ready) before get().)
template <class T>
T wait_or_abort(std::future<T>& f, std::string_view what, std::chrono::milliseconds limit = patience,
                std::source_location where = std::source_location::current()) {
  if (f.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "%s:%u: FATAL: %.*s did not finish within %lld ms\n", where.file_name(),
                 static_cast<unsigned>(where.line()), static_cast<int>(what.size()), what.data(),
                 static_cast<long long>(limit.count()));
    std::abort();
  }
  return f.get();
}

// fn() on a thread of its own, for a blocking call that has no timed form
// (Supervisor::block(), Job::wait()): what fn returns, or what it throws;
// aborts as wait_or_abort() does when fn has not returned within `limit`.
template <class F>
auto call_within(std::string_view what, F&& fn, std::chrono::milliseconds limit = patience,
                 std::source_location where = std::source_location::current()) {
  auto f = std::async(std::launch::async, std::forward<F>(fn));
  return wait_or_abort(f, what, limit, where);
}

// A counter a test can wait on.
class Counter {
 public:
  int bump() {
    std::lock_guard lk(m_);
    ++n_;
    cv_.notify_all();
    return n_;
  }
  bool wait_for_at_least(int n, std::chrono::milliseconds d = patience) {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, d, [&] { return n_ >= n; });
  }
  int value() const {
    std::lock_guard lk(m_);
    return n_;
  }

 private:
  mutable std::mutex m_;
  std::condition_variable cv_;
  int n_ = 0;
};

// A one-shot event with a timed wait.
class Event {
 public:
  void set() {
    std::lock_guard lk(m_);  // notify under the lock: a waiter may destroy *this once it sees set_
    set_ = true;
    cv_.notify_all();
  }
  bool wait_for(std::chrono::milliseconds d = patience) const {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, d, [&] { return set_; });
  }
  bool is_set() const {
    std::lock_guard lk(m_);
    return set_;
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  bool set_ = false;
};

// Opens gates when the test's scope ends, so that a failed REQUIRE does not
// leave pool threads blocked while a destructor waits for them. Declare it
// after the supervisor or pool (it must be destroyed first).
class OpenOnExit {
 public:
  OpenOnExit(std::initializer_list<Event*> gates) : gates_(gates) {}
  ~OpenOnExit() {
    for (auto* g : gates_) g->set();
  }
  OpenOnExit(const OpenOnExit&) = delete;
  OpenOnExit& operator=(const OpenOnExit&) = delete;

 private:
  std::vector<Event*> gates_;
};

// A log sink a test can wait on: wait_for("text") returns once a line
// containing "text" has been logged.
class LineWaiter final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  bool wait_for(std::string_view text, std::chrono::seconds limit = patience) {
    std::unique_lock lk(lines_m_);
    return cv_.wait_for(lk, limit, [&] {
      return std::any_of(lines_.begin(), lines_.end(),
                         [&](const std::string& l) { return contains(l, text); });
    });
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    {
      std::lock_guard lk(lines_m_);
      lines_.emplace_back(msg.payload.data(), msg.payload.size());
    }
    cv_.notify_all();
  }
  void flush_() override {}

 private:
  std::mutex lines_m_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
};

}  // namespace test
