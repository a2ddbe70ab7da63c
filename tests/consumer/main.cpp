#include <atask/atask.hpp>

#include <cstdio>

int main() {
  atask::Supervisor sv({.id = "consumer", .pool_size = 2});
  sv.start();
  auto t = atask::background_task(sv, [](int x) { return x + 1; })(41);
  const int v = t.get();
  sv.stop();
  std::printf("consumer got %d\n", v);
  return v == 42 ? 0 : 1;
}
