// 01: embed a supervisor, submit a task, get its result.
#include <atask/atask.hpp>

#include <cstdio>

int main() {
  atask::Supervisor sv({.id = "hello", .pool_size = 2});
  sv.start();
  atask::TaskHandle<int> answer = sv.submit(
      {}, [](int a, int b) { return a * b; }, 6, 7);
  std::printf("6 * 7 = %d (task #%llu ran on the pool)\n", answer.get(),
              static_cast<unsigned long long>(answer.id()));
  sv.stop();
}
