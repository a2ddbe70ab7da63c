#include <atask/atask.hpp>
#include <atask/http.hpp>

#include <cstdio>
#include <string>

int main() {
  atask::Supervisor sv({.id = "consumer", .pool_size = 2});
  auto http = atask::http::serve(sv, {.port = 0});  // atask::http from the installed package
  sv.start();
  auto t = atask::background_task(sv, [](int x) { return x + 1; })(41);
  const int v = t.get();
  const bool metrics =
      atask::http::prometheus_text(sv).find("atask_tasks_completed_total") != std::string::npos;
  const bool served = http.port() != 0;
  sv.stop();
  std::printf("consumer got %d (metrics %s, served %s)\n", v, metrics ? "yes" : "no", served ? "yes" : "no");
  return v == 42 && metrics && served ? 0 : 1;
}
