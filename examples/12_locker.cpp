// 12: Locker - a timed lock. When it cannot be taken in time (a thread is
// stuck while holding it) the critical handler runs and the caller gets a
// falsy guard, or std::nullopt from a wrapped function, instead of hanging.
#include <atask/locker.hpp>

#include <cstdio>
#include <latch>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

int main() {
  atask::Locker lock({.timeout = 100ms,
                      .on_critical =
                          [](const atask::Locker& l) {
                            std::printf("  critical: '%s' not locked within %lldms (failure #%llu)\n",
                                        l.name().c_str(), static_cast<long long>(l.timeout().count()),
                                        static_cast<unsigned long long>(l.failures()));
                          },
                      .name = "accounts"});
  std::vector<int> accounts;

  // As a guard.
  if (auto g = lock.lock()) accounts.push_back(100);

  // As a wrapper: the result comes back in a std::optional.
  auto add = lock.wrap([&](int v) {
    accounts.push_back(v);
    return accounts.size();
  });
  std::printf("size after add(50): %zu\n", add(50).value_or(0));

  // Another thread holds the lock past the timeout.
  std::latch held{1}, done{1};
  std::jthread stuck([&] {
    auto g = lock.lock();
    held.count_down();
    done.wait();
  });
  held.wait();
  auto r = add(7);
  std::printf("add(7) while stuck: %s\n", r ? "ran" : "not run (nullopt)");
  done.count_down();
  stuck.join();
  std::printf("add(7) afterwards: size %zu, failures %llu\n", add(7).value_or(0),
              static_cast<unsigned long long>(lock.failures()));
  return lock.failures() == 1 ? 0 : 1;
}
