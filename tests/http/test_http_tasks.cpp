// A task's times in the task JSON and GET /api/tasks/{id}, the dashboard's
// task detail.
#include "http_client.hpp"
#include "fixtures.hpp"

#include <atask/atask.hpp>
#include <atask/http.hpp>

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>

namespace json = boost::json;
using namespace std::chrono_literals;
using test::http_request;

namespace {

struct Served {
  Served() : sv(test::options("tasks", 4)) { server = atask::http::serve(sv, {.port = 0}); }
  unsigned short port() const { return server->port(); }
  atask::Supervisor sv;
  std::optional<atask::http::Server> server;
};

int aborts_in_child(int) {
  std::abort();
}

bool is_iso(const json::value& v) {
  static const std::regex iso(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  return v.is_string() && std::regex_match(std::string(v.as_string()), iso);
}

}  // namespace

TEST_CASE("http: GET /api/tasks/{id} gives one task with its times") {
  Served s;
  s.sv.start();
  const auto before = std::chrono::system_clock::now();
  auto ok = s.sv.submit({.priority = atask::Priority::high, .name = "sum"}, [] { return 2; });
  REQUIRE(ok.get_for(test::patience) == 2);
  auto bad = s.sv.submit({.name = "boom"}, []() -> int { throw std::runtime_error("disk full"); });
  REQUIRE(bad.wait_for(test::patience));

  auto r = http_request(s.port(), "GET", "/api/tasks/" + std::to_string(ok.id()));
  REQUIRE(r.status == 200);
  const auto t = json::parse(r.body).as_object();
  CHECK(t.at("id").as_int64() == static_cast<std::int64_t>(ok.id()));
  CHECK(t.at("name").as_string() == "sum");
  CHECK(t.at("priority").as_string() == "high");
  CHECK(t.at("kind").as_string() == "thread");
  CHECK(t.at("status").as_string() == "completed");
  CHECK(t.at("wait_seconds").is_double());
  CHECK(t.at("run_seconds").is_double());
  for (const char* k : {"queued_at", "started_at", "finished_at"}) CHECK_MESSAGE(is_iso(t.at(k)), k);
  // In order, and not before the test began (the clock's ms, less a ms of rounding).
  const std::string q = json::value_to<std::string>(t.at("queued_at")),
                    st = json::value_to<std::string>(t.at("started_at")),
                    f = json::value_to<std::string>(t.at("finished_at"));
  CHECK(q <= st);
  CHECK(st <= f);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000 - 1);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char earliest[32];
  std::strftime(earliest, sizeof earliest, "%Y-%m-%dT%H:%M:%S", &tm);
  CHECK(q >= std::string(earliest));

  auto failed = json::parse(http_request(s.port(), "GET", "/api/tasks/" + std::to_string(bad.id())).body);
  CHECK(failed.at("status").as_string() == "failed");
  CHECK(test::contains(json::value_to<std::string>(failed.at("error")), "disk full"));

  // The list carries the same times.
  auto list = json::parse(http_request(s.port(), "GET", "/api/tasks").body).at("tasks").as_array();
  REQUIRE(list.size() == 2);
  CHECK(list[0].at("finished_at") == t.at("finished_at"));

  CHECK(http_request(s.port(), "GET", "/api/tasks/999999").status == 404);
  CHECK(http_request(s.port(), "GET", "/api/tasks/12x").status == 400);
  test::HttpConnection head(s.port());
  CHECK(head.head("/api/tasks/" + std::to_string(ok.id())).status == 200);
  CHECK(http_request(s.port(), "POST", "/api/tasks/" + std::to_string(ok.id())).status == 405);
}

TEST_CASE("http: a queued task has no start or finish time yet") {
  Served s;
  s.sv.start();
  auto later = s.sv.submit({.delay = 1h, .name = "later"}, [] {});
  auto t = json::parse(http_request(s.port(), "GET", "/api/tasks/" + std::to_string(later.id())).body);
  CHECK(t.at("status").as_string() == "delayed");
  CHECK(t.at("started_at").is_null());
  CHECK(t.at("finished_at").is_null());
  CHECK(t.at("run_seconds").is_null());
  CHECK(later.cancel());
}

TEST_CASE("http: a process task names its child pid and the signal its child died of") {
  auto o = test::options("tasks", 2);
  o.processes.pool_size = 1;
  atask::Supervisor sv(o);
  auto server = atask::http::serve(sv, {.port = 0});
  sv.start();
  auto crash = sv.submit({.name = "crash"}, atask::process(&aborts_in_child), 1);
  REQUIRE(crash.wait_for(test::patience));
  auto thread = sv.submit({.name = "plain"}, [] { return 1; });
  REQUIRE(thread.get_for(test::patience) == 1);

  auto r = http_request(server.port(), "GET", "/api/tasks/" + std::to_string(crash.id()));
  REQUIRE(r.status == 200);
  const auto t = json::parse(r.body).as_object();
  CHECK(t.at("kind").as_string() == "process");
  CHECK(t.at("status").as_string() == "failed");
  REQUIRE(t.at("child_pid").is_int64());
  CHECK(t.at("child_pid").as_int64() == crash.info().child_pid);
  CHECK(t.at("child_pid").as_int64() > 0);
  CHECK(t.at("exit_signal").as_int64() == SIGABRT);
  CHECK(t.at("exit_signal_name").as_string() == "SIGABRT");
  CHECK(t.at("exit_code").is_null());
  // The error names the same child.
  CHECK(test::contains(json::value_to<std::string>(t.at("error")),
                       "pid " + std::to_string(t.at("child_pid").as_int64())));

  // A thread task has none of them; the list carries the same fields.
  const auto p =
      json::parse(http_request(server.port(), "GET", "/api/tasks/" + std::to_string(thread.id())).body);
  for (const char* k : {"child_pid", "exit_signal", "exit_signal_name", "exit_code"})
    CHECK_MESSAGE(p.at(k).is_null(), k);
  const auto list = json::parse(http_request(server.port(), "GET", "/api/tasks?status=failed").body);
  REQUIRE(list.at("tasks").as_array().size() == 1);
  CHECK(list.at("tasks").at(0).at("exit_signal").as_int64() == SIGABRT);
  sv.stop();
}
