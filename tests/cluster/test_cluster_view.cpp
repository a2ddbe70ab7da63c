// The API server's view of a cluster (cluster/view.hpp) through the control
// plane: /api/cluster, the dead-letter routes, and the cluster's series on
// /metrics, checked by promtool - against a redis-server the test starts.
#include <atask/cluster/view.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/http/server.hpp>
#include <atask/tasks/registry.hpp>

#include <doctest/doctest.h>

#include "distributed_fixtures.hpp"
#include "fixtures.hpp"
#include "http_client.hpp"
#include "promtool.hpp"
#include "redis_server.hpp"

#include <boost/json/parse.hpp>

#include <chrono>
#include <latch>
#include <stdexcept>
#include <string>

namespace dist = atask::distributed;
namespace json = boost::json;
using namespace std::chrono_literals;
using namespace test;

namespace {

json::object parse_object(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  REQUIRE_MESSAGE(!ec, body);
  REQUIRE_MESSAGE(v.is_object(), body);
  return v.as_object();
}

// GET /api/cluster/tasks/<id> as an object (200 required).
json::object task_reply(unsigned short port, const std::string& id, const Headers& headers = {}) {
  auto r = http_request(port, "GET", "/api/cluster/tasks/" + id, {}, headers);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return parse_object(r.body);
}

// POST /api/cluster/tasks; the task id (200 required).
std::string send_over_http(unsigned short port, const std::string& body, const Headers& headers = {}) {
  auto r = http_request(port, "POST", "/api/cluster/tasks", body, headers);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return std::string(parse_object(r.body).at("id").as_string());
}

}  // namespace

TEST_SUITE("cluster") {
  TEST_CASE(
      "an API server that runs no task shows the cluster's workers and queues on /api/cluster and /metrics") {
    RedisServer redis;
    // The worker: its own supervisor, as another process would have.
    atask::TaskRegistry tasks;
    std::latch running(1);
    tasks.add("ok", [](int x) { return x; });
    tasks.add("hold", [&] {
      running.count_down();
      wait_until_stopped();
    });
    atask::Supervisor worker_sv(options("cw"));
    auto wo = fast(redis, "cluster-worker-1");
    wo.labels = {{"plugins", "demo-tasks@1.0.0"}};
    dist::Consumer worker(worker_sv, tasks, wo);
    worker_sv.start();

    // The API server: no consumer, a client and the view.
    dist::Client client({.broker = redis.url()});
    atask::Supervisor api_sv(options("api"));
    auto server = atask::http::serve(api_sv, {.port = 0, .cluster = atask::cluster::view(client)});
    api_sv.start();
    REQUIRE(eventually([&] { return server.port() != 0; }));

    CHECK(client.send<int>("ok", {4}).get_for(patience) == 4);
    auto held = client.send("hold", {});
    running.wait();
    auto waiting = client.send("ok", {1}, {.queue = "reports", .priority = atask::Priority::high});
    auto later = client.send("ok", {2}, {.queue = "reports", .countdown = 600s});

    json::object c;
    REQUIRE(eventually([&] {
      auto r = http_request(server.port(), "GET", "/api/cluster");
      if (r.status != 200) return false;
      c = parse_object(r.body);
      const auto& ws = c.at("workers").as_array();
      return ws.size() == 1 && ws[0].at("running").as_array().size() == 1 && ws[0].at("succeeded") == 1;
    }));
    const auto& w = c.at("workers").as_array()[0].as_object();
    CHECK(w.at("name") == "cluster-worker-1");
    CHECK(w.at("labels").at("plugins") == "demo-tasks@1.0.0");
    CHECK(w.at("running").as_array()[0].as_string() == held.id());
    CHECK(w.at("heartbeat_age_s").to_number<double>() < 5);
    const auto& qs = c.at("queues").as_array();
    REQUIRE(qs.size() == 2);
    CHECK(qs[0].at("queue") == "default");
    CHECK(qs[0].at("running") == 1);
    CHECK(qs[1].at("queue") == "reports");
    CHECK(qs[1].at("waiting").at("high") == 1);
    CHECK(qs[1].at("delayed") == 1);
    const auto& t = c.at("totals").as_object();
    CHECK(t.at("workers") == 1);
    CHECK(t.at("waiting") == 1);
    CHECK(t.at("delayed") == 1);

    auto m = http_request(server.port(), "GET", "/metrics");
    REQUIRE(m.status == 200);
    CHECK(contains(m.body, "atask_cluster_up 1\n"));
    CHECK(contains(m.body, "atask_cluster_workers 1\n"));
    CHECK(contains(m.body, "atask_cluster_queue_waiting{queue=\"reports\",priority=\"high\"} 1\n"));
    CHECK(contains(m.body, "atask_cluster_queue_delayed{queue=\"reports\"} 1\n"));
    CHECK(contains(
        m.body, "atask_cluster_worker_tasks_total{worker=\"cluster-worker-1\",outcome=\"succeeded\"} 1\n"));
    CHECK(contains(m.body, "atask_supervisor_"));  // the API server's own series are still there
    const auto lint = check_with_promtool(m.body);
    REQUIRE_MESSAGE(lint.found, "promtool not found: install the Debian package 'prometheus'");
    INFO("promtool output:\n", lint.output);
    CHECK(lint.exit_code == 0);
    CHECK(lint.output.empty());

    CHECK(held.cancel());
    CHECK(held.wait_for(patience));
    (void)waiting, (void)later;
    worker_sv.stop();
  }

  TEST_CASE(
      "the API server lists dead letters, requeues one and purges the rest - wrong entries and methods get "
      "clear errors") {
    RedisServer redis;
    dist::Client client({.broker = redis.url()});
    atask::Supervisor api_sv(options("api2"));
    auto server = atask::http::serve(api_sv, {.port = 0, .cluster = atask::cluster::view(client)});
    api_sv.start();
    REQUIRE(eventually([&] { return server.port() != 0; }));

    // A worker that knows no task: each one goes dead (NotFoundError).
    atask::TaskRegistry none;
    atask::Supervisor worker_sv(options("cw2"));
    dist::Consumer worker(worker_sv, none, fast(redis, "cluster-worker-2"));
    worker_sv.start();
    auto a = client.send("nobody.knows", {1});
    auto b = client.send("nobody.knows", {2});
    CHECK_THROWS((void)a.get_for(patience));
    CHECK_THROWS((void)b.get_for(patience));
    worker_sv.stop();

    auto r = http_request(server.port(), "GET", "/api/cluster/queues/default/dead?limit=10");
    REQUIRE(r.status == 200);
    auto d = parse_object(r.body);
    const auto& dead = d.at("dead").as_array();
    REQUIRE(dead.size() == 2);
    CHECK(dead[0].at("task_id").as_string() == a.id());
    CHECK(dead[0].at("name") == "nobody.knows");
    CHECK(dead[0].at("error_type") == "atask::NotFoundError");
    const std::string entry(dead[0].at("entry").as_string());

    auto rq = http_request(server.port(), "POST", "/api/cluster/queues/default/dead/" + entry + "/requeue");
    CHECK(rq.status == 200);
    CHECK(parse_object(rq.body).at("task_id").as_string() == a.id());
    CHECK(a.status() == dist::RemoteStatus::queued);
    auto again =
        http_request(server.port(), "POST", "/api/cluster/queues/default/dead/" + entry + "/requeue");
    CHECK(again.status == 404);
    CHECK(contains(again.body, "no dead letter"));

    auto purge = http_request(server.port(), "POST", "/api/cluster/queues/default/dead/purge");
    CHECK(purge.status == 200);
    CHECK(parse_object(purge.body).at("purged") == 1);
    CHECK(client.dead_letters("default").empty());

    CHECK(http_request(server.port(), "GET", "/api/cluster/queues/default/dead/purge").status == 405);
    CHECK(http_request(server.port(), "POST", "/api/cluster").status == 405);
    CHECK(http_request(server.port(), "GET", "/api/cluster/queues/bad%20name/dead").status == 400);
    CHECK(http_request(server.port(), "GET", "/api/cluster/queues/default/dead?limit=0").status == 400);
    CHECK(http_request(server.port(), "GET", "/api/cluster/queues/default").status == 404);
  }

  TEST_CASE(
      "without a cluster /api/cluster is 404 - with Redis gone it is 503 and /metrics says atask_cluster_up "
      "0") {
    atask::Supervisor plain(options("plain"));
    auto s1 = atask::http::serve(plain, {.port = 0});
    plain.start();
    REQUIRE(eventually([&] { return s1.port() != 0; }));
    auto r = http_request(s1.port(), "GET", "/api/cluster");
    CHECK(r.status == 404);
    CHECK(contains(r.body, "shows no cluster"));
    // The dashboard asks for /api/cluster only when the supervisor says so.
    CHECK(parse_object(http_request(s1.port(), "GET", "/api/supervisor").body).at("cluster") == false);

    std::string url;
    {
      RedisServer redis;
      url = redis.url();
    }  // stopped: nothing listens there now
    dist::Client client({.broker = url, .retry_for = 200ms});
    atask::Supervisor api_sv(options("api3"));
    auto s2 = atask::http::serve(api_sv, {.port = 0, .cluster = atask::cluster::view(client)});
    api_sv.start();
    REQUIRE(eventually([&] { return s2.port() != 0; }));
    CHECK(parse_object(http_request(s2.port(), "GET", "/api/supervisor").body).at("cluster") == true);
    auto c = http_request(s2.port(), "GET", "/api/cluster");
    CHECK(c.status == 503);
    CHECK(contains(c.body, "the cluster cannot be read"));
    auto m = http_request(s2.port(), "GET", "/metrics");
    CHECK(m.status == 200);
    CHECK(contains(m.body, "atask_cluster_up 0\n"));
    CHECK(check_with_promtool(m.body).exit_code == 0);
  }

  TEST_CASE(
      "the API server sends a named task over HTTP and a worker runs it - GET follows it to its result or "
      "error") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("add", [](int a, int b) { return a + b; });
    tasks.add("broken", []() -> int { throw std::runtime_error("always broken"); });
    atask::Supervisor worker_sv(options("cw4"));
    dist::Consumer worker(worker_sv, tasks, fast(redis, "cluster-worker-4"));
    worker_sv.start();

    dist::Client client({.broker = redis.url()});
    atask::Supervisor api_sv(options("api4"));
    auto server = atask::http::serve(api_sv, {.port = 0, .cluster = atask::cluster::view(client)});
    api_sv.start();
    REQUIRE(eventually([&] { return server.port() != 0; }));
    const auto port = server.port();

    const std::string id = send_over_http(
        port, R"({"name": "add", "args": [2, 3], "priority": "high", "idempotency_key": "http-k1"})");
    CHECK(id.size() == 32);
    json::object t;
    REQUIRE(eventually([&] {
      t = task_reply(port, id);
      return t.at("status") == "succeeded";
    }));
    CHECK(t.at("id").as_string() == id);
    CHECK(t.at("name") == "add");
    CHECK(t.at("queue") == "default");
    CHECK(t.at("priority") == "high");
    CHECK(t.at("result") == 5);
    CHECK(t.at("attempt") == 1);
    CHECK(t.at("worker") == "cluster-worker-4");
    CHECK(t.at("attempts").as_array().empty());
    CHECK(t.at("created_ms").to_number<std::int64_t>() > 0);
    CHECK(t.at("finished_ms").to_number<std::int64_t>() >= t.at("started_ms").to_number<std::int64_t>());
    // The same idempotency key: the same task, nothing sent.
    CHECK(send_over_http(port, R"({"name": "add", "args": [2, 3], "idempotency_key": "http-k1"})") == id);

    // A failure: its error, no result.
    const std::string bad = send_over_http(port, R"({"name": "broken"})");
    REQUIRE(eventually([&] {
      t = task_reply(port, bad);
      return t.at("status") == "failed";
    }));
    CHECK(t.at("error_type") == "std::runtime_error");
    CHECK(t.at("error_message") == "always broken");
    CHECK(!t.contains("result"));

    // countdown and eta (Unix seconds): delayed until then.
    const std::string later = send_over_http(port, R"({"name": "add", "args": [1, 1], "countdown": 600})");
    t = task_reply(port, later);
    CHECK(t.at("status") == "delayed");
    CHECK(t.at("due_ms").to_number<std::int64_t>() >= t.at("created_ms").to_number<std::int64_t>() + 599'000);
    const std::int64_t eta_s =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
            .count() +
        3600;
    const std::string at = send_over_http(
        port, R"({"name": "add", "args": [1, 1], "queue": "later", "eta": )" + std::to_string(eta_s) + "}");
    t = task_reply(port, at);
    CHECK(t.at("status") == "delayed");
    CHECK(t.at("queue") == "later");
    CHECK(t.at("due_ms").to_number<std::int64_t>() == eta_s * 1000);

    // Bad requests: 400 naming what is wrong.
    const std::vector<std::pair<std::string, std::string>> bad_bodies{
        {"not json", "must be a JSON object"},
        {R"([1, 2])", "must be a JSON object"},
        {R"({"args": [1, 2]})", "'name'"},
        {R"({"name": "add", "args": {"a": 1}})", "'args' must be a JSON array"},
        {R"({"name": "add", "args": [1, 2], "priority": "urgent"})", "priority 'urgent'"},
        {R"({"name": "add", "args": [1, 2], "qeue": "x"})", "unknown field 'qeue'"},
        {R"({"name": "add", "countdown": -1})", "'countdown'"},
        {R"({"name": "add", "eta": "tomorrow"})", "'eta'"},
        {R"({"name": "add", "queue": "bad name"})", "queue"}};
    for (const auto& [body, says] : bad_bodies) {
      CAPTURE(body);
      auto r = http_request(port, "POST", "/api/cluster/tasks", body);
      CHECK(r.status == 400);
      CHECK_MESSAGE(contains(r.body, says), r.body);
    }
    auto unknown = http_request(port, "GET", "/api/cluster/tasks/0123456789abcdef0123456789abcdef");
    CHECK(unknown.status == 404);
    CHECK(contains(unknown.body, "knows no task"));
    CHECK(http_request(port, "GET", "/api/cluster/tasks").status == 405);
    CHECK(http_request(port, "POST", "/api/cluster/tasks/" + id).status == 405);

    // With a token: sending and reading a task need it, as the other actions do.
    atask::Supervisor tok_sv(options("api5"));
    auto guarded =
        atask::http::serve(tok_sv, {.port = 0, .token = "s3cret", .cluster = atask::cluster::view(client)});
    tok_sv.start();
    REQUIRE(eventually([&] { return guarded.port() != 0; }));
    const Headers auth{{"Authorization", "Bearer s3cret"}};
    CHECK(http_request(guarded.port(), "POST", "/api/cluster/tasks", R"({"name": "add", "args": [1, 2]})")
              .status == 401);
    CHECK(http_request(guarded.port(), "GET", "/api/cluster/tasks/" + id).status == 401);
    const std::string three = send_over_http(guarded.port(), R"({"name": "add", "args": [1, 2]})", auth);
    CHECK(client.handle<int>(three).get_for(patience) == 3);
    CHECK(task_reply(guarded.port(), three, auth).at("result") == 3);
    worker_sv.stop();
  }

  TEST_CASE(
      "tasks waiting for a retry are counted per queue in /api/cluster and /metrics apart from other delayed "
      "tasks") {
    RedisServer redis;
    atask::TaskRegistry tasks;
    tasks.add("flaky", []() -> int { throw std::runtime_error("not yet"); });
    tasks.add("ok", [](int x) { return x; });
    atask::Supervisor worker_sv(options("cw6"));
    dist::Consumer worker(worker_sv, tasks, fast(redis, "cluster-worker-6"));
    worker_sv.start();

    dist::Client client({.broker = redis.url()});
    atask::Supervisor api_sv(options("api6"));
    auto server = atask::http::serve(api_sv, {.port = 0, .cluster = atask::cluster::view(client)});
    api_sv.start();
    REQUIRE(eventually([&] { return server.port() != 0; }));

    // One task waits 10 minutes for its second attempt; one for its countdown.
    auto slow = client.send("flaky", {}, {.retry = atask::RetryPolicy{.max_attempts = 2, .delays = {600s}}});
    auto later = client.send("ok", {1}, {.countdown = 600s});
    REQUIRE(eventually([&] { return client.queue_stats("default").retrying == 1; }));
    auto c = parse_object(http_request(server.port(), "GET", "/api/cluster").body);
    const auto& q = c.at("queues").as_array()[0];
    CHECK(q.at("queue") == "default");
    CHECK(q.at("delayed") == 2);
    CHECK(q.at("retrying") == 1);
    CHECK(c.at("totals").at("retrying") == 1);
    CHECK(c.at("totals").at("delayed") == 2);
    auto m = http_request(server.port(), "GET", "/metrics");
    CHECK(contains(m.body, "atask_cluster_queue_retrying{queue=\"default\"} 1\n"));
    CHECK(check_with_promtool(m.body).exit_code == 0);
    // GET /api/cluster/tasks/<id> shows the failed attempt while it waits.
    const auto t = task_reply(server.port(), slow.id());
    CHECK(t.at("status") == "delayed");
    CHECK(t.at("attempts").as_array().size() == 1);
    CHECK(t.at("attempts").as_array()[0].at("error_message") == "not yet");

    // A canceled retry is no longer counted.
    CHECK(slow.cancel());
    CHECK(client.queue_stats("default").retrying == 0);
    CHECK(client.queue_stats("default").delayed == 1);

    // One whose retry comes soon: counted until it is promoted, then not.
    auto soon = client.send("flaky", {}, {.retry = atask::RetryPolicy{.max_attempts = 2, .delays = {200ms}}});
    CHECK_THROWS_AS((void)soon.get_for(patience), dist::RemoteError);
    CHECK(soon.attempt() == 2);
    CHECK(client.queue_stats("default").retrying == 0);
    // Purged with the queue's delayed tasks: not counted either.
    auto purged =
        client.send("flaky", {}, {.retry = atask::RetryPolicy{.max_attempts = 2, .delays = {600s}}});
    REQUIRE(eventually([&] { return client.queue_stats("default").retrying == 1; }));
    CHECK(client.purge("default") == 2);
    CHECK(client.queue_stats("default").retrying == 0);
    (void)later;
    worker_sv.stop();
  }
}
