#pragma once
// What the distributed tests share: a worker's options with short periods
// (so that dead workers are found in a second), and a task body that runs
// until it is asked to stop.

#include <atask/core/task.hpp>
#include <atask/distributed/consumer.hpp>

#include "redis_server.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

namespace test {

// Heartbeat 100 ms, dead after 1 s, sweeps every 200 ms, reads block 200 ms.
inline atask::distributed::ConsumerOptions fast(const RedisServer& r, std::string name) {
  using namespace std::chrono_literals;
  return {.broker = r.url(),
          .name = std::move(name),
          .heartbeat = 100ms,
          .dead_after = 1000ms,
          .reap_every = 200ms,
          .block = 200ms,
          .stop_timeout = 5000ms};
}

// A thread task's body that returns once the task is asked to stop: it
// waits on its stop token, not on a clock.
inline void wait_until_stopped() {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lk(m);
  cv.wait(lk, atask::this_task::stop_token(), [] { return false; });
}

}  // namespace test
