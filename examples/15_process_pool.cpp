// 15: the process pool - plain functions run in child processes, with
// their arguments and result carried as JSON. A child that crashes or runs
// past its hard time limit fails only its own task and is replaced; the
// supervisor's other work never notices.
#include <atask/atask.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace geo {
// A user type crosses the process boundary through tag_invoke.
struct Box {
  double w = 0, h = 0;
};
void tag_invoke(boost::json::value_from_tag, boost::json::value& v, const Box& b) {
  v = {{"w", b.w}, {"h", b.h}};
}
Box tag_invoke(boost::json::value_to_tag<Box>, const boost::json::value& v) {
  return {boost::json::value_to<double>(v.at("w")), boost::json::value_to<double>(v.at("h"))};
}
}  // namespace geo

// CPU-heavy work, away from the parent's threads and heap.
double area_sum(std::vector<geo::Box> boxes) {
  double s = 0;
  for (const auto& b : boxes) s += b.w * b.h;
  return s;
}

int flaky(int x) {
  if (x == 3) std::abort();  // a bug in a native library, say
  return x * 10;
}

int slow(int ms) {
  for (int i = 0; i < ms; ++i) {
    if (atask::this_task::stop_requested()) return -i;  // the soft limit: finish cleanly
    std::this_thread::sleep_for(1ms);
  }
  return ms;
}

int main() {
  // Construct the supervisor first: it forks the pool's fork server while
  // the program has only one thread.
  atask::Supervisor sv({.id = "procs", .processes = {.pool_size = 2, .time_limit = 2s}});
  sv.start();

  auto t = sv.submit({}, atask::process(&area_sum), std::vector<geo::Box>{{2, 3}, {4, 5}});
  std::printf("area sum computed in a child: %.1f\n", t.get());

  auto f = atask::background_task(sv, atask::process(&flaky), {.priority = atask::Priority::high});
  for (int x = 1; x <= 4; ++x) {
    auto h = f(x);
    h.wait();
    if (h.status() == atask::TaskStatus::completed)
      std::printf("flaky(%d) = %d\n", x, h.get());
    else
      std::printf("flaky(%d) failed: %s\n", x, h.info().error.c_str());
  }

  auto soft = sv.submit({}, atask::process(&slow, {.soft_time_limit = 50ms}), 10'000);
  std::printf("slow() saw its soft limit and returned %d\n", soft.get());
  auto hard = sv.submit({}, atask::process(&slow, {.time_limit = 100ms}), 10'000);
  hard.wait();
  std::printf("slow() past its hard limit: %s\n", hard.info().error.c_str());

  auto i = sv.info().processes;
  std::printf("children %d, spawned %llu, crashed %llu, killed %llu\n", i.children,
              static_cast<unsigned long long>(i.spawned), static_cast<unsigned long long>(i.crashed),
              static_cast<unsigned long long>(i.killed));
  sv.stop();
}
