// 04: canceling tasks, stop tokens, waiting with a time limit.
#include <atask/atask.hpp>

#include <cstdio>
#include <future>

using namespace std::chrono_literals;

int main() {
  atask::Supervisor sv({.id = "cancel", .pool_size = 1});
  sv.start();
  std::promise<void> started;
  // A callable whose first parameter is a std::stop_token gets the task's token.
  auto worker = sv.submit({}, [&started](std::stop_token st) {
    started.set_value();
    int rounds = 0;
    while (!st.stop_requested()) ++rounds;
    return rounds;
  });
  auto queued = sv.submit({}, [] { std::puts("never printed"); });
  started.get_future().wait();
  queued.cancel();  // queued: it will never run
  try {
    worker.get_for(10ms);
  } catch (const atask::TimeoutError& e) {
    std::printf("get_for: %s\n", e.what());
  }
  worker.cancel();  // running: its stop_token is requested
  std::printf("worker stopped after %d busy rounds; queued task status: %s\n", worker.get(),
              std::string(atask::to_string(queued.status())).c_str());
  sv.stop();
}
