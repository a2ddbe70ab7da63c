#include <atask/atask.hpp>
#include <atask/distributed/client.hpp>
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
      atask::http::prometheus_text(sv).find("atask_task_completed_total") != std::string::npos;
  const bool served = http.port() != 0;
  sv.stop();
  // atask::distributed from the installed package: nothing listens on port 1.
  bool distributed = false;
  try {
    atask::distributed::Client client(
        {.broker = "redis://127.0.0.1:1", .connect_timeout = std::chrono::seconds(2)});
    (void)client.send("x", {});
  } catch (const atask::BrokerError& e) {
    distributed = std::string(e.what()).find("no connection to Redis") != std::string::npos;
  }
  std::printf("consumer got %d (metrics %s, served %s, distributed %s)\n", v, metrics ? "yes" : "no",
              served ? "yes" : "no", distributed ? "yes" : "no");
  return v == 42 && metrics && served && distributed ? 0 : 1;
}
