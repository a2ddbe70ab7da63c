// `atask api`, the API server apart from the workers, end to end with real
// processes: Redis, an API server and two `atask worker` processes loading
// the example plugins; a job streamed to a client while the worker running
// it is killed.

#include "cli_process.hpp"
#include "fixtures.hpp"
#include "http_client.hpp"
#include "redis_server.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>

#include <fstream>
#include <sstream>
#include <string>

namespace json = boost::json;
using namespace std::chrono_literals;
using namespace test;
using namespace test::cli;

namespace {

// `atask api --json` on a free port; its URL's port once it printed it.
struct ApiServer {
  Cli proc;
  unsigned short port = 0;
  ApiServer(const RedisServer& redis, const std::string& jobs_dir)
      : proc({"api", "--broker", redis.url(), "--plugin-dir", plugin_dir, "--http", "127.0.0.1:0",
              "--jobs-dir", jobs_dir, "--json", "-l", "warn"}) {
    std::string url;
    REQUIRE_MESSAGE(eventually([&] {
                      if (proc.poll()) return true;
                      const auto out = proc.out();
                      const auto nl = out.find('\n');
                      if (nl == std::string::npos) return false;
                      const auto started = parse_json(out.substr(0, nl)).as_object();
                      CHECK(started.at("event") == "started");
                      CHECK(started.at("job_types") == 1);
                      url = std::string(started.at("http").as_string());
                      return true;
                    }),
                    "atask api printed no start line; stderr: " << proc.err());
    REQUIRE_MESSAGE(!proc.poll(), "atask api exited: " << proc.err());
    port = static_cast<unsigned short>(std::stoi(url.substr(url.rfind(':') + 1)));
  }
};

json::object cluster(unsigned short port) {
  auto r = http_request(port, "GET", "/api/cluster");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return parse_json(r.body).as_object();
}

// The first complete event object of a job stream's body ("[{...},\n{...}").
json::object first_event(const std::string& body) {
  const auto from = body.find('{');
  const auto to = body.find('}', from);
  REQUIRE(from != std::string::npos);
  REQUIRE(to != std::string::npos);
  return parse_json(body.substr(from, to - from + 1)).as_object();
}

}  // namespace

TEST_SUITE("cli") {
  TEST_CASE(
      "atask api shows both worker processes and their plugins and a job streamed to a client survives the "
      "kill of the worker running it") {
    RedisServer redis;
    TempDir jobs;
    Worker w1(redis, "e2e-w1"), w2(redis, "e2e-w2");
    ApiServer api(redis, jobs.path().string());

    // The API server runs no task and shows the whole cluster.
    json::object c;
    REQUIRE(eventually([&] {
      c = cluster(api.port);
      return c.at("workers").as_array().size() == 2;
    }));
    for (const auto& w : c.at("workers").as_array()) {
      CHECK(contains(std::string(w.at("labels").at("plugins").as_string()), "demo-tasks@1.0.0"));
      CHECK(contains(std::string(w.at("labels").at("plugins").as_string()), "demo-reports@0.3.1"));
    }
    CHECK(c.at("workers").as_array()[0].at("name") == "e2e-w1");
    // What the API server's plugins register, with their documentation.
    const auto& plugins = c.at("plugins").as_array();
    REQUIRE(plugins.size() == 2);
    CHECK(plugins[1].at("name") == "demo-tasks");
    CHECK(plugins[1].at("version") == "1.0.0");
    CHECK(plugins[1].at("tasks").as_array()[0].at("description") == "Adds two integers");
    CHECK(plugins[1].at("tasks").as_array()[0].at("parameters").at("a") == "integer");
    CHECK(plugins[1].at("tasks").as_array()[1].at("kind") == "process");
    CHECK(plugins[0].at("job_types").as_array()[0].at("type") == "report");
    // A named task sent over HTTP runs on a worker; GET follows it to its result.
    auto sent =
        http_request(api.port, "POST", "/api/cluster/tasks", R"({"name": "demo.add", "args": [20, 22]})");
    REQUIRE_MESSAGE(sent.status == 200, sent.body);
    const std::string task_id(parse_json(sent.body).at("id").as_string());
    json::object task;
    REQUIRE(eventually([&] {
      auto r = http_request(api.port, "GET", "/api/cluster/tasks/" + task_id);
      REQUIRE_MESSAGE(r.status == 200, r.body);
      task = parse_json(r.body).as_object();
      return task.at("status") == "succeeded";
    }));
    CHECK(task.at("result") == 42);
    CHECK(contains(std::string(task.at("worker").as_string()), "e2e-w"));
    auto page = http_request(api.port, "GET", "/");
    CHECK(page.status == 200);
    CHECK(contains(page.body, "data-testid=\"cluster\""));

    // A job of the plugin's type "report": 40 steps of 150 ms on a worker.
    const std::string params = R"({"steps": 40, "step_ms": 150})";
    auto first = std::make_unique<HttpConnection>(api.port, 60s);
    first->send("POST", "/api/jobs/report", params);
    first->read_header();
    REQUIRE(first->stream_status() == 200);
    (void)first->read_body_until([](const std::string& b) { return contains(b, "step 2 of 40"); });
    // A client that disconnects and asks again joins the same job, and its
    // stream starts with the progress so far.
    first->close();
    first.reset();
    HttpConnection again(api.port, 60s);
    again.send("POST", "/api/jobs/report", params);
    again.read_header();
    REQUIRE(again.stream_status() == 200);
    const auto resumed =
        first_event(again.read_body_until([](const std::string& b) { return contains(b, "}"); }));
    CHECK(resumed.at("status") == "running");
    CHECK(resumed.at("fraction").to_number<double>() >= 2.0 / 40);

    // Kill -9 the worker that runs the task.
    std::string runner;
    REQUIRE(eventually([&] {
      const auto now = cluster(api.port);
      for (const auto& w : now.at("workers").as_array())
        if (!w.at("running").as_array().empty()) runner = std::string(w.at("name").as_string());
      return !runner.empty();
    }));
    Worker& victim = runner == "e2e-w1" ? w1 : w2;
    const std::string survivor = runner == "e2e-w1" ? "e2e-w2" : "e2e-w1";
    victim.process().signal(SIGKILL);
    CHECK(victim.process().wait() == 128 + SIGKILL);

    // The stream goes on: the survivor runs the task again, to the end.
    const auto body = again.read_body_until([](const std::string&) { return false; });
    REQUIRE(again.stream_done());
    auto events = parse_json(body).as_array();
    REQUIRE(!events.empty());
    const auto& last = events.back().as_object();
    REQUIRE_MESSAGE(last.at("status") == "done", body);
    std::ifstream result(jobs.path() / std::string(last.at("result").as_string()));
    std::stringstream text;
    text << result.rdbuf();
    CHECK(text.str() == "\"report of 40 steps\"");

    // The dead worker was reaped; the survivor did the work.
    REQUIRE(eventually(
        [&] {
          c = cluster(api.port);
          const auto& ws = c.at("workers").as_array();
          return ws.size() == 1 && ws[0].at("name").as_string() == survivor &&
                 ws[0].at("succeeded").to_number<int>() >= 1;
        },
        20s));
    CHECK(c.at("totals").at("redelivered").to_number<int>() >= 1);

    api.proc.signal(SIGTERM);
    CHECK(api.proc.wait() == 0);
    CHECK(contains(api.proc.out(), "\"event\":\"stopped\""));
  }

  TEST_CASE(
      "atask api refuses a bad --http address with a usage error and broken plugins under --strict or an "
      "address in use with exit 1") {
    auto bad = run_atask({"api", "--http", "127.0.0.1:99999"});
    CHECK(bad.code == 2);
    CHECK(contains(bad.err, "is not a port"));
    CHECK(contains(bad.err, "Usage: atask api"));

    auto strict = run_atask({"api", "--strict", "--plugin-dir", broken_dir, "--http", "127.0.0.1:0"});
    CHECK(strict.code == 1);
    CHECK(contains(strict.err, "atask api: refusing to start (--strict): 4 plugin(s) failed to load"));

    RedisServer redis;
    TempDir jobs;
    ApiServer first(redis, jobs.path().string());
    auto taken =
        run_atask({"api", "--broker", redis.url(), "--http", "127.0.0.1:" + std::to_string(first.port)});
    CHECK(taken.code == 1);
    CHECK(contains(taken.err, "could not start"));
  }
}
