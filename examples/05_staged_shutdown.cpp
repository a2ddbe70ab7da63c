// 05: shutdown in stages. A task that honours its stop token ends in the
// soft stage; the report says what happened.
#include <atask/atask.hpp>

#include <cstdio>
#include <future>

using namespace std::chrono_literals;

int main() {
  atask::Supervisor sv({.id = "shutdown", .pool_size = 2});
  sv.start();
  std::promise<void> running;
  auto polite = sv.submit({.name = "polite"}, [&running](std::stop_token st) {
    running.set_value();
    while (!st.stop_requested()) std::this_thread::yield();
    return "stopped when asked";
  });
  running.get_future().wait();
  atask::StopReport r = sv.stop({.warm_timeout = 50ms, .soft_timeout = 5s});
  std::printf("polite task: %s\n", polite.get());
  std::printf("stop reached the %s stage: %zu asked to stop, %zu abandoned\n",
              std::string(atask::to_string(r.stage)).c_str(), r.stop_requested, r.abandoned.size());
}
