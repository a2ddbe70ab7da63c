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

#include <latch>
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
}
