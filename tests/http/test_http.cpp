// The HTTP control plane: JSON API, errors, auth, job streams, lifecycle.
#include "http_client.hpp"
#include "fixtures.hpp"

#include <atask/atask.hpp>
#include <atask/http.hpp>
#include <atask/jobs.hpp>

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

namespace json = boost::json;
using namespace std::chrono_literals;
using test::http_request;
using test::HttpConnection;

namespace {

json::value parse(const std::string& s) {
  return json::parse(s);
}

std::string err_of(const test::HttpResult& r) {
  return json::value_to<std::string>(parse(r.body).at("error"));
}

// A supervisor with an HTTP server on an ephemeral loopback port.
struct Served {
  explicit Served(atask::http::ServerOptions o = {}, atask::SupervisorOptions so = {})
      : sv([&] {
          so.id = "web";
          so.pool_size = so.pool_size < 4 ? 4 : so.pool_size;
          if (!so.logger) so.logger = test::quiet_logger();
          return so;
        }()) {
    o.port = 0;
    server = atask::http::serve(sv, o);
  }
  void start() { sv.start(); }
  unsigned short port() const { return server->port(); }

  atask::Supervisor sv;
  std::optional<atask::http::Server> server;
};

struct NoJson {
  int x = 0;
  bool operator<(const NoJson& o) const { return x < o.x; }
};

}  // namespace

TEST_CASE("http: GET /api/supervisor describes pools and tasks") {
  Served s({}, {.pool_size = 5, .reserve_normal = 1, .reserve_high = 1});
  s.start();
  REQUIRE(s.server->url() == "http://127.0.0.1:" + std::to_string(s.port()));
  auto t = s.sv.submit({.priority = atask::Priority::high}, [] { return 1; });
  REQUIRE(t.get_for(test::patience) == 1);

  auto r = http_request(s.port(), "GET", "/api/supervisor");
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  auto v = parse(r.body).as_object();
  CHECK(v.at("id").as_string() == "web");
  CHECK(v.at("state").as_string() == "running");
  auto& pool = v.at("pool").as_object();
  CHECK(pool.at("pool_size").as_int64() == 5);
  CHECK(pool.at("reserve_normal").as_int64() == 1);
  CHECK(pool.at("reserve_high").as_int64() == 1);
  CHECK(pool.at("running").as_object().size() == 4);
  CHECK(pool.at("queued").as_object().contains("critical"));
  CHECK(v.at("processes").at("enabled").as_bool() == false);
  CHECK(v.at("tasks").at("submitted").at("high").as_int64() >= 1);
  CHECK(v.at("tasks").at("completed").at("high").as_int64() >= 1);
  bool http_step = false;
  for (auto& st : v.at("steps").as_array())
    if (st.at("name").as_string() == "http") http_step = st.at("state").as_string() == "running";
  CHECK(http_step);
  CHECK(v.at("aloops").is_array());
}

TEST_CASE("http: the http step boots after workers and is off unless served") {
  {
    atask::Supervisor plain({.logger = test::quiet_logger()});
    auto order = plain.boot_order();
    CHECK(std::find(order.begin(), order.end(), "http") == order.end());
  }
  Served s;
  auto order = s.sv.boot_order();
  REQUIRE(order.size() >= 2);
  CHECK(order.back() == "http");
  CHECK(std::find(order.begin(), order.end(), "workers") < std::find(order.begin(), order.end(), "http"));
}

TEST_CASE("http: a worker's JSON counts the triggers that a stop dropped") {
  Served s;
  test::Event entered, release;
  test::OpenOnExit open{&release};
  auto ev = atask::event_worker(s.sv,
                                [&] {
                                  entered.set();
                                  REQUIRE(release.wait_for());
                                },
                                {.name = "ev"});
  s.start();
  ev->start();
  REQUIRE(ev->trigger());
  REQUIRE(entered.wait_for());
  REQUIRE(ev->trigger());  // pending behind the running call
  CHECK(parse(http_request(s.port(), "GET", "/api/workers/ev").body).at("triggers_dropped").as_int64() == 0);
  ev->request_stop();  // drops it
  CHECK(parse(http_request(s.port(), "GET", "/api/workers/ev").body).at("triggers_dropped").as_int64() == 1);
  release.set();
  REQUIRE(ev->wait_stopped_for(test::patience));
}

TEST_CASE("http: GET /api/workers lists every worker with its counters") {
  Served s;
  test::Event ran;
  auto ev = atask::event_worker(s.sv, [&] { ran.set(); }, {.name = "ev"});
  auto bg = atask::background_worker(s.sv, [] {}, {.name = "bg"});
  auto q = atask::queue_worker<int>(s.sv, [](int) {}, {.name = "q"});
  s.start();
  ev->start();
  q->start();
  REQUIRE(ev->trigger());
  REQUIRE(ran.wait_for());
  REQUIRE(test::eventually([&] { return ev->info().runs == 1; }));

  auto r = http_request(s.port(), "GET", "/api/workers");
  REQUIRE(r.status == 200);
  auto ws = parse(r.body).at("workers").as_array();
  REQUIRE(ws.size() == 3);
  CHECK(ws[0].at("name").as_string() == "ev");
  CHECK(ws[0].at("kind").as_string() == "event");
  CHECK(ws[0].at("state").as_string() == "active");
  CHECK(ws[0].at("runs").as_int64() == 1);
  CHECK(ws[0].at("can_trigger").as_bool());
  CHECK(ws[0].at("last_run").is_string());
  CHECK(ws[1].at("kind").as_string() == "background");
  CHECK(ws[1].at("last_run").is_null());
  CHECK_FALSE(ws[1].at("can_trigger").as_bool());
  CHECK(ws[2].at("kind").as_string() == "queue");
  CHECK(ws[2].at("can_put").as_bool());

  auto one = http_request(s.port(), "GET", "/api/workers/q");
  REQUIRE(one.status == 200);
  CHECK(parse(one.body).at("name").as_string() == "q");
  auto missing = http_request(s.port(), "GET", "/api/workers/nope");
  CHECK(missing.status == 404);
  CHECK(test::contains(err_of(missing), "nope"));
}

TEST_CASE("http: a worker's JSON has its last error and when it happened") {
  Served s;
  auto ev = atask::event_worker(s.sv, [] { throw std::runtime_error("disk full"); }, {.name = "flaky"});
  s.start();
  auto before = parse(http_request(s.port(), "GET", "/api/workers/flaky").body);
  CHECK(before.at("last_error").is_null());
  CHECK(before.at("last_error_at").is_null());
  ev->start();
  REQUIRE(ev->trigger());
  REQUIRE(test::eventually([&] { return ev->info().errors == 1; }));
  auto after = parse(http_request(s.port(), "GET", "/api/workers/flaky").body);
  CHECK(test::contains(json::value_to<std::string>(after.at("last_error")), "disk full"));
  const auto at = json::value_to<std::string>(after.at("last_error_at"));
  CHECK(std::regex_match(at, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  auto listed = parse(http_request(s.port(), "GET", "/api/workers").body).at("workers").as_array();
  CHECK(listed.at(0).at("last_error") == after.at("last_error"));
}

TEST_CASE("http: POST trigger start and stop control workers by name") {
  Served s;
  std::atomic<int> runs{0};
  test::Event second;
  auto ev = atask::event_worker(s.sv,
                                [&] {
                                  if (++runs == 2) second.set();
                                },
                                {.name = "tick tock"});  // a name that needs %-escaping
  auto bg = atask::background_worker(s.sv, [] {}, {.name = "bg"});
  s.start();

  // start
  auto r = http_request(s.port(), "POST", "/api/workers/tick%20tock/start");
  REQUIRE(r.status == 200);
  auto v = parse(r.body);
  CHECK(v.at("started").as_bool());
  CHECK(v.at("worker").at("state").as_string() == "active");
  CHECK(ev->is_active());
  CHECK(
      parse(http_request(s.port(), "POST", "/api/workers/tick%20tock/start").body).at("started").as_bool() ==
      false);

  // trigger twice: the executor runs twice
  for (int i = 0; i < 2; ++i) {
    auto t = http_request(s.port(), "POST", "/api/workers/tick%20tock/trigger");
    REQUIRE(t.status == 200);
    CHECK(parse(t.body).at("triggered").as_bool());
    if (i == 0) REQUIRE(test::eventually([&] { return runs.load() == 1; }));
  }
  REQUIRE(second.wait_for());

  // a background worker cannot be triggered
  auto bad = http_request(s.port(), "POST", "/api/workers/bg/trigger");
  CHECK(bad.status == 409);
  CHECK(test::contains(err_of(bad), "only event and interval workers"));

  // stop
  auto st = http_request(s.port(), "POST", "/api/workers/tick%20tock/stop");
  REQUIRE(st.status == 200);
  REQUIRE(ev->wait_stopped_for(test::patience));
  CHECK(parse(http_request(s.port(), "GET", "/api/workers/tick%20tock").body).at("state").as_string() ==
        "stopped");
  // a stopped worker is not triggered
  CHECK(parse(http_request(s.port(), "POST", "/api/workers/tick%20tock/trigger").body)
            .at("triggered")
            .as_bool() == false);

  CHECK(http_request(s.port(), "POST", "/api/workers/nope/start").status == 404);
  CHECK(http_request(s.port(), "POST", "/api/workers/nope/trigger").status == 404);
  CHECK(http_request(s.port(), "POST", "/api/workers/bg/explode").status == 404);
}

TEST_CASE("http: POST put converts JSON into a queue worker's items") {
  Served s;
  std::mutex m;
  std::vector<int> got;
  test::Event two;
  test::Event gate;
  auto q = atask::queue_worker<int>(s.sv,
                                    [&](int x) {
                                      std::lock_guard lk(m);
                                      got.push_back(x);
                                      if (got.size() == 2) two.set();
                                    },
                                    {.name = "nums"});
  auto full = atask::queue_worker<std::string>(s.sv, [&](std::string) { gate.wait_for(); },
                                               {.name = "full", .capacity = 1});
  auto opaque = atask::queue_worker<NoJson>(s.sv, [](NoJson) {}, {.name = "opaque"});
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "ev"});
  test::OpenOnExit open{&gate};  // after the workers: opened before they stop
  s.start();
  q->start();
  full->start();
  opaque->start();
  ev->start();

  REQUIRE(http_request(s.port(), "POST", "/api/workers/nums/put", "41").status == 200);
  REQUIRE(http_request(s.port(), "POST", "/api/workers/nums/put", " 42 ").status == 200);
  REQUIRE(two.wait_for());
  {
    std::lock_guard lk(m);
    CHECK(got == std::vector<int>{41, 42});
  }

  auto wrong_type = http_request(s.port(), "POST", "/api/workers/nums/put", "\"forty\"");
  CHECK(wrong_type.status == 400);
  CHECK(test::contains(err_of(wrong_type), "does not convert"));
  auto malformed = http_request(s.port(), "POST", "/api/workers/nums/put", "{\"a\":");
  CHECK(malformed.status == 400);
  CHECK(test::contains(err_of(malformed), "not valid JSON"));
  auto not_queue = http_request(s.port(), "POST", "/api/workers/ev/put", "1");
  CHECK(not_queue.status == 409);
  CHECK(test::contains(err_of(not_queue), "not a queue worker"));
  auto no_conv = http_request(s.port(), "POST", "/api/workers/opaque/put", "1");
  CHECK(no_conv.status == 409);
  CHECK(test::contains(err_of(no_conv), "do not convert from JSON"));

  // capacity 1: the first item runs (blocked on the gate), the second
  // waits, the third finds the queue full.
  REQUIRE(http_request(s.port(), "POST", "/api/workers/full/put", "\"a\"").status == 200);
  REQUIRE(test::eventually([&] { return full->info().queue_length == 0 && full->info().runs == 0; }));
  int status = 0;
  for (int i = 0; i < 3 && status != 503; ++i)
    status = http_request(s.port(), "POST", "/api/workers/full/put", "\"b\"").status;
  CHECK(status == 503);
  q->stop();
}

TEST_CASE("http: wrong methods get 405 with Allow and unknown paths 404") {
  Served s;
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "ev"});
  s.start();
  auto r = http_request(s.port(), "GET", "/api/workers/ev/trigger");
  CHECK(r.status == 405);
  CHECK(r.allow == "POST");
  auto p = http_request(s.port(), "POST", "/api/supervisor");
  CHECK(p.status == 405);
  CHECK(p.allow == "GET, HEAD");
  CHECK(http_request(s.port(), "DELETE", "/api/workers").status == 405);
  CHECK(http_request(s.port(), "GET", "/nope").status == 404);
  CHECK(http_request(s.port(), "GET", "/api").status == 404);
  CHECK(http_request(s.port(), "GET", "/api/../../etc/passwd").status == 400);
  CHECK(http_request(s.port(), "GET", "/api/%2e%2e/supervisor").status == 400);
  CHECK(http_request(s.port(), "GET", "//api/supervisor").status == 400);
  CHECK(http_request(s.port(), "GET", "/api/supervisor/").status == 200);
  CHECK(http_request(s.port(), "GET", "/api/workers/%zz").status == 400);
  CHECK(http_request(s.port(), "GET", "/api/workers/a%00b").status == 400);
  auto j = http_request(s.port(), "GET", "/api/jobs");
  CHECK(j.status == 404);  // this server has no Jobs
  CHECK(test::contains(err_of(j), "no jobs"));
}

TEST_CASE("http: oversized bodies get 413 and oversized headers 431") {
  Served s({.max_body_size = 1024, .max_header_size = 2048});
  auto q = atask::queue_worker<std::string>(s.sv, [](std::string) {}, {.name = "q"});
  s.start();
  q->start();
  auto big = http_request(s.port(), "POST", "/api/workers/q/put", "\"" + std::string(2000, 'x') + "\"");
  CHECK(big.status == 413);
  CHECK(test::contains(err_of(big), "exceeds 1024 bytes"));
  auto huge = http_request(s.port(), "GET", "/api/supervisor", {}, {{"X-Filler", std::string(4000, 'y')}});
  CHECK(huge.status == 431);
  CHECK(http_request(s.port(), "POST", "/api/workers/q/put", "\"small\"").status == 200);
}

TEST_CASE("http: a token guards POST requests and reads stay open") {
  Served s({.token = "s3cret"});
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "ev"});
  s.start();
  ev->start();
  auto no = http_request(s.port(), "POST", "/api/workers/ev/trigger");
  CHECK(no.status == 401);
  CHECK(no.www_authenticate == "Bearer");
  CHECK(http_request(s.port(), "POST", "/api/workers/ev/trigger", {}, {{"Authorization", "Bearer wrong!"}})
            .status == 401);
  CHECK(http_request(s.port(), "POST", "/api/workers/ev/trigger", {}, {{"Authorization", "Bearer s3cret"}})
            .status == 200);
  CHECK(http_request(s.port(), "GET", "/api/workers/ev").status == 200);
}

TEST_CASE("http: binding beyond loopback needs a token") {
  atask::Supervisor sv({.logger = test::quiet_logger()});
  auto msg =
      test::what_of<atask::OptionsError>([&] { (void)atask::http::serve(sv, {.address = "0.0.0.0"}); });
  CHECK(test::contains(msg, "needs a token"));
  CHECK(test::contains(
      test::what_of<atask::OptionsError>([&] { (void)atask::http::serve(sv, {.address = "localhost:80"}); }),
      "not an IPv4 or IPv6 address"));
  CHECK(test::contains(
      test::what_of<atask::OptionsError>([&] { (void)atask::http::serve(sv, {.request_timeout = 0ms}); }),
      "request_timeout"));

  Served s({.address = "0.0.0.0", .token = "t0k"});
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "ev"});
  s.start();
  ev->start();
  CHECK(http_request(s.port(), "POST", "/api/workers/ev/trigger").status == 401);
  CHECK(http_request(s.port(), "POST", "/api/workers/ev/trigger", {}, {{"Authorization", "Bearer t0k"}})
            .status == 200);
}

TEST_CASE("http: a port in use makes start fail with the address in the message") {
  Served first;
  first.start();
  atask::Supervisor sv({.logger = test::quiet_logger()});
  (void)atask::http::serve(sv, {.port = first.port()});
  auto msg = test::what_of<atask::Error>([&] { sv.start(); });
  CHECK(test::contains(msg, "cannot bind 127.0.0.1:" + std::to_string(first.port())));
  CHECK_FALSE(sv.is_running());
}

TEST_CASE("http: GET /api/tasks filters by status and limits") {
  Served s;
  s.start();
  for (int i = 0; i < 5; ++i) (void)s.sv.submit({.name = "ok"}, [] {}).get_for(test::patience);
  auto bad = s.sv.submit({.name = "bad"}, [] { throw std::runtime_error("boom"); });
  REQUIRE(bad.wait_for(test::patience));

  auto all = parse(http_request(s.port(), "GET", "/api/tasks?limit=3").body).at("tasks").as_array();
  REQUIRE(all.size() == 3);
  CHECK(all[2].at("name").as_string() == "bad");  // newest last
  CHECK(all[0].at("id").as_int64() < all[1].at("id").as_int64());

  auto failed = parse(http_request(s.port(), "GET", "/api/tasks?status=failed").body).at("tasks").as_array();
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].at("error").as_string() == "boom");
  CHECK(failed[0].at("kind").as_string() == "thread");
  CHECK(failed[0].at("run_seconds").is_double());

  CHECK(http_request(s.port(), "GET", "/api/tasks?status=weird").status == 400);
  CHECK(http_request(s.port(), "GET", "/api/tasks?limit=0").status == 400);
  CHECK(http_request(s.port(), "GET", "/api/tasks?limit=12x").status == 400);
}

TEST_CASE("http: GET / serves the dashboard and /metrics the Prometheus text") {
  Served s;
  s.start();
  auto page = http_request(s.port(), "GET", "/");
  REQUIRE(page.status == 200);
  CHECK(test::contains(page.content_type, "text/html"));
  CHECK(test::contains(page.body, "<html"));
  auto m = http_request(s.port(), "GET", "/metrics");
  REQUIRE(m.status == 200);
  CHECK(test::contains(m.content_type, "text/plain"));
  CHECK(test::contains(m.body, "# TYPE atask_task_submitted_total counter"));

  Served off({.dashboard = false});
  off.start();
  CHECK(http_request(off.port(), "GET", "/").status == 404);
}

TEST_CASE("http: keep-alive serves many requests on one connection and stop closes it") {
  Served s;
  s.start();
  HttpConnection c(s.port());
  for (int i = 0; i < 20; ++i) REQUIRE(c.request("GET", "/api/supervisor").status == 200);
  CHECK(s.server->stats().connections_open == 1);
  CHECK(s.server->stats().requests >= 20);
  s.sv.stop();
  // The server closed the idle connection: the next read sees the end.
  CHECK_THROWS([&] {
    c.send("GET", "/api/supervisor");
    (void)c.read();
  }());
}

TEST_CASE("http: an idle connection is closed after request_timeout") {
  Served s({.request_timeout = 200ms});
  s.start();
  HttpConnection c(s.port());
  REQUIRE(c.request("GET", "/api/supervisor").status == 200);
  // Send nothing: the server closes the connection (read returns the end).
  char b;
  boost::system::error_code ec;
  c.socket().read_some(boost::asio::buffer(&b, 1), ec);
  CHECK(ec == boost::asio::error::eof);
  REQUIRE(test::eventually([&] { return s.server->stats().timeouts == 1; }));
}

// -- job streams ---------------------------------------------------------------------

namespace {

struct JobFixture {
  test::TempDir dir;
  atask::Supervisor sv{{.id = "jobs", .pool_size = 4, .logger = test::quiet_logger()}};
  std::unique_ptr<atask::Jobs> jobs;
  std::optional<atask::http::Server> server;
  test::Event half, release;
  std::atomic<int> runs{0};
  test::OpenOnExit open{&release};

  explicit JobFixture(atask::http::ServerOptions o = {}) {
    jobs = std::make_unique<atask::Jobs>(sv, atask::JobsOptions{.storage_dir = dir.path()});
    jobs->add_type("slow", [this](atask::JobContext& job) {
      ++runs;
      job.progress(0.5, "half way");
      half.set();
      if (!release.wait_for()) throw std::runtime_error("never released");
      if (job.params().contains("fail")) throw std::runtime_error("asked to fail");
      job.progress(0.9, "almost");
      std::ofstream(job.output_path()) << "result of " << json::serialize(job.params());
    });
    o.port = 0;
    o.jobs = jobs.get();
    server = atask::http::serve(sv, o);
    sv.start();
  }
  ~JobFixture() {
    release.set();
    sv.stop();
    jobs.reset();
  }
  unsigned short port() const { return server->port(); }
};

json::array events_of(const std::string& body) {
  return parse(body).as_array();
}

}  // namespace

TEST_CASE("http: POST /api/jobs streams progress while the job runs and ends when it is done") {
  JobFixture f;
  HttpConnection c(f.port());
  c.send("POST", "/api/jobs/slow", R"({"doc": 1})");
  c.read_header();
  REQUIRE(c.stream_status() == 200);
  CHECK(c.stream_chunked());
  // The half-way event arrives while the job still waits: nothing is buffered.
  auto partial = c.read_body_until([](const std::string& b) { return test::contains(b, "half way"); });
  REQUIRE(f.half.wait_for());
  CHECK_FALSE(c.stream_done());
  CHECK(partial.front() == '[');
  f.release.set();
  auto body = c.read_body_until([](const std::string&) { return false; });
  REQUIRE(c.stream_done());
  auto ev = events_of(body);
  REQUIRE(ev.size() >= 2);
  CHECK(ev.back().at("status").as_string() == "done");
  CHECK(ev.back().at("fraction").as_double() == 1.0);
  const auto result = json::value_to<std::string>(ev.back().at("result"));
  CHECK(result.find('/') == std::string::npos);
  std::ifstream in(f.dir.path() / result);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  CHECK(content == R"(result of {"doc":1})");
  // fractions never go back
  double last = 0;
  for (auto& e : ev) {
    CHECK(e.at("fraction").as_double() >= last);
    last = e.at("fraction").as_double();
  }

  // A second request for the same params: the done job, one event, no new run.
  auto again = http_request(f.port(), "POST", "/api/jobs/slow", R"({"doc": 1})");
  REQUIRE(again.status == 200);
  auto ev2 = events_of(again.body);
  REQUIRE(ev2.size() == 1);
  CHECK(ev2[0].at("status").as_string() == "done");
  CHECK(ev2[0].at("id") == ev.back().at("id"));
  CHECK(f.runs == 1);

  auto listed = parse(http_request(f.port(), "GET", "/api/jobs").body);
  CHECK(listed.at("types").as_array().size() == 1);
  CHECK(listed.at("jobs").as_array().at(0).at("status").as_string() == "done");
  CHECK(listed.at("jobs").as_array().at(0).at("params").at("doc").as_int64() == 1);
}

TEST_CASE("http: many clients follow one job and a client that leaves does not stop it") {
  JobFixture f;
  HttpConnection a(f.port()), b(f.port()), leaver(f.port());
  for (auto* c : {&a, &leaver, &b}) {
    c->send("POST", "/api/jobs/slow", R"({"k": "same", "n": [1, 2]})");
    c->read_header();
    REQUIRE(c->stream_status() == 200);
    c->read_body_until([](const std::string& s) { return test::contains(s, "half way"); });
  }
  leaver.close();
  REQUIRE(test::eventually([&] { return f.server->stats().streams_open == 2; }));

  // Reconnect with the keys in another order: the same job, and the first
  // event is its current progress.
  HttpConnection again(f.port());
  again.send("POST", "/api/jobs/slow", R"({"n": [1, 2], "k": "same"})");
  again.read_header();
  auto first = again.read_body_until([](const std::string& s) { return test::contains(s, "}"); });
  const bool at_half =
      test::contains(first, "\"fraction\":5E-1") || test::contains(first, "\"fraction\":0.5");
  CHECK(at_half);
  f.release.set();

  std::set<std::int64_t> ids;
  for (auto* c : {&a, &b, &again}) {
    auto ev = events_of(c->read_body_until([](const std::string&) { return false; }));
    CHECK(ev.back().at("status").as_string() == "done");
    ids.insert(ev.back().at("id").as_int64());
  }
  CHECK(ids.size() == 1);
  CHECK(f.runs == 1);
}

TEST_CASE("http: a failed job reports its error in the stream") {
  JobFixture f;
  f.release.set();
  auto r = http_request(f.port(), "POST", "/api/jobs/slow", R"({"fail": true})");
  REQUIRE(r.status == 200);
  auto ev = events_of(r.body);
  CHECK(ev.back().at("status").as_string() == "failed");
  CHECK(ev.back().at("error").as_string() == "asked to fail");
}

TEST_CASE("http: GET /api/jobs pages through the jobs newest first") {
  JobFixture f;
  f.release.set();
  for (int k = 1; k <= 5; ++k)
    REQUIRE(events_of(
                http_request(f.port(), "POST", "/api/jobs/slow", "{\"doc\": " + std::to_string(k) + "}").body)
                .back()
                .at("status")
                .as_string() == "done");
  REQUIRE(events_of(http_request(f.port(), "POST", "/api/jobs/slow", R"({"fail": true})").body)
              .back()
              .at("status")
              .as_string() == "failed");
  auto ids = [](const json::value& page) {
    std::vector<std::int64_t> out;
    for (const auto& j : page.at("jobs").as_array()) out.push_back(j.at("id").as_int64());
    return out;
  };
  // Without paging parameters: every job, as before, and no page fields.
  auto all = parse(http_request(f.port(), "GET", "/api/jobs").body).as_object();
  CHECK(all.at("jobs").as_array().size() == 6);
  CHECK_FALSE(all.contains("total"));

  auto first = parse(http_request(f.port(), "GET", "/api/jobs?status=finished&limit=4").body);
  CHECK(first.at("total").as_int64() == 6);
  CHECK(first.at("offset").as_int64() == 0);
  CHECK(first.at("limit").as_int64() == 4);
  CHECK(ids(first) == std::vector<std::int64_t>{6, 5, 4, 3});
  CHECK(first.at("types").as_array().size() == 1);
  auto second = parse(http_request(f.port(), "GET", "/api/jobs?status=finished&offset=4&limit=4").body);
  CHECK(ids(second) == std::vector<std::int64_t>{2, 1});
  CHECK(second.at("total").as_int64() == 6);
  CHECK(parse(http_request(f.port(), "GET", "/api/jobs?status=finished&offset=6").body)
            .at("jobs")
            .as_array()
            .empty());
  auto failed = parse(http_request(f.port(), "GET", "/api/jobs?status=failed").body);
  CHECK(failed.at("total").as_int64() == 1);
  CHECK(ids(failed) == std::vector<std::int64_t>{6});
  CHECK(parse(http_request(f.port(), "GET", "/api/jobs?status=done&offset=1&limit=1").body)
            .at("jobs")
            .at(0)
            .at("id") == 4);
  CHECK(parse(http_request(f.port(), "GET", "/api/jobs?status=running").body).at("total").as_int64() == 0);

  for (const char* bad : {"/api/jobs?status=stopped", "/api/jobs?offset=-1", "/api/jobs?offset=x",
                          "/api/jobs?offset=", "/api/jobs?limit=0", "/api/jobs?limit=1001"}) {
    auto r = http_request(f.port(), "GET", bad);
    CHECK_MESSAGE(r.status == 400, bad);
  }
  CHECK(test::contains(err_of(http_request(f.port(), "GET", "/api/jobs?status=stopped")), "finished"));
}

TEST_CASE("http: a failed job runs again as a new job when its params are posted again") {
  JobFixture f({.token = "s3cret"});
  f.release.set();
  const test::Headers auth{{"Authorization", "Bearer s3cret"}};
  auto first =
      events_of(http_request(f.port(), "POST", "/api/jobs/slow", R"({"fail": true, "n": 1})", auth).body);
  REQUIRE(first.back().at("status").as_string() == "failed");
  // What the dashboard's "Run again" sends: the failed job's type and params, with the token.
  const auto failed = parse(
      http_request(f.port(), "GET", "/api/jobs/slow/" + std::to_string(first.back().at("id").as_int64()))
          .body);
  const std::string params = json::serialize(failed.at("params"));
  CHECK(http_request(f.port(), "POST", "/api/jobs/slow", params).status == 401);
  auto again = events_of(http_request(f.port(), "POST", "/api/jobs/slow", params, auth).body);
  CHECK(again.back().at("status").as_string() == "failed");
  CHECK(again.back().at("id").as_int64() > first.back().at("id").as_int64());
  CHECK(f.runs == 2);
  // Both are listed: the failed one stays in the history.
  CHECK(parse(http_request(f.port(), "GET", "/api/jobs?status=failed").body).at("total").as_int64() == 2);
}

TEST_CASE("http: job requests with bad input get 4xx") {
  JobFixture f;
  CHECK(http_request(f.port(), "POST", "/api/jobs/nope", "{}").status == 404);
  auto arr = http_request(f.port(), "POST", "/api/jobs/slow", "[1,2]");
  CHECK(arr.status == 400);
  CHECK(test::contains(err_of(arr), "must be a JSON object"));
  CHECK(http_request(f.port(), "POST", "/api/jobs/slow", "{not json").status == 400);
  CHECK(http_request(f.port(), "GET", "/api/jobs/slow").status == 405);
  CHECK(f.runs == 0);
}

TEST_CASE("http: the control plane's own work is not counted as tasks") {
  Served s;
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "ev"});
  s.start();
  const auto before = s.sv.info().tasks;
  for (const char* t : {"/metrics", "/api/workers", "/api/tasks", "/api/supervisor", "/api/workers/ev"})
    REQUIRE(http_request(s.port(), "GET", t).status == 200);
  REQUIRE(http_request(s.port(), "POST", "/api/workers/ev/start").status == 200);
  const auto after = s.sv.info().tasks;
  CHECK(after.submitted == before.submitted);
  CHECK(s.sv.tasks().empty());
}

TEST_CASE("http: connections beyond max_connections are closed and counted") {
  Served s({.max_connections = 2});
  s.start();
  auto a = std::make_unique<HttpConnection>(s.port());
  HttpConnection b(s.port());
  REQUIRE(a->request("GET", "/api/supervisor").status == 200);
  REQUIRE(b.request("GET", "/api/supervisor").status == 200);
  {
    HttpConnection third(s.port());  // the kernel accepts; the server closes it at once
    char c;
    boost::system::error_code ec;
    third.socket().read_some(boost::asio::buffer(&c, 1), ec);
    CHECK((ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset));
  }
  CHECK(s.server->stats().connections_refused == 1);
  a.reset();  // a slot frees up once the server has seen the close
  REQUIRE(test::eventually([&] { return s.server->stats().connections_open == 1; }));
  CHECK(http_request(s.port(), "GET", "/api/supervisor").status == 200);
}

TEST_CASE("http: a Jobs destroyed while the server runs is let go and answered with 503") {
  test::TempDir dir;
  atask::Supervisor sv(test::options("gone"));
  auto jobs = std::make_unique<atask::Jobs>(sv, atask::JobsOptions{.storage_dir = dir.path()});
  jobs->add_type("t", [](atask::JobContext& j) { std::ofstream(j.output_path()) << "x"; });
  const auto server = atask::http::serve(sv, {.port = 0, .jobs = jobs.get()});
  sv.start();
  REQUIRE(http_request(server.port(), "GET", "/api/jobs").status == 200);
  jobs.reset();  // before the supervisor stops, as the natural declaration order does
  auto r = http_request(server.port(), "GET", "/api/jobs");
  CHECK(r.status == 503);
  CHECK(test::contains(err_of(r), "gone"));
  CHECK(http_request(server.port(), "POST", "/api/jobs/t", "{}").status == 503);
  CHECK(http_request(server.port(), "GET", "/api/supervisor").status == 200);
}

// -- as HTTP clients expect: numbers, stream framings, HEAD, auth, 408, messages ------

namespace {

// A number written with an exponent where JSON has a number (after ':', ','
// or '['): "1E-1", "2.5e-7". Hex digits inside strings ("3e5" in a job
// key) follow a quote or a letter, not one of those.
bool has_exponent_number(const std::string& text) {
  static const std::regex exp_number(R"([:,\[]-?[0-9]+(\.[0-9]+)?[eE][-+]?[0-9])");
  return std::regex_search(text, exp_number);
}

std::vector<std::string> lines_of(const std::string& body) {
  std::vector<std::string> out;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

struct SseEvent {
  std::string id;
  json::value data;
};

// "id: 1-3\ndata: {...}\n\n" blocks.
std::vector<SseEvent> sse_events(const std::string& body) {
  std::vector<SseEvent> out;
  std::size_t at = 0;
  for (auto end = body.find("\n\n"); end != std::string::npos; end = body.find("\n\n", at)) {
    SseEvent e;
    for (const auto& line : lines_of(body.substr(at, end - at))) {
      if (line.rfind("id: ", 0) == 0) e.id = line.substr(4);
      if (line.rfind("data: ", 0) == 0) e.data = parse(line.substr(6));
    }
    out.push_back(std::move(e));
    at = end + 2;
  }
  return out;
}

bool has_half_way_event(const std::string& body) {
  const auto at = body.find("half way");
  return at != std::string::npos && body.find("\n\n", at) != std::string::npos;
}

// Reads what the server sends until it closes the connection.
std::string read_to_close(HttpConnection& c) {
  std::string got;
  char buf[4096];
  boost::system::error_code ec;
  for (;;) {
    const std::size_t n = c.socket().read_some(boost::asio::buffer(buf), ec);
    got.append(buf, n);
    if (ec) break;
  }
  REQUIRE_MESSAGE(ec != boost::asio::error::would_block, "the server neither answered nor closed");
  return got;
}

const test::Headers sse_accept{{"Accept", "text/event-stream"}};

}  // namespace

TEST_CASE("http: replies write numbers as people write them") {
  Served s;
  s.start();
  for (int i = 0; i < 3; ++i) REQUIRE(s.sv.submit({.name = "n"}, [] {}).wait_for(test::patience));
  for (const char* target : {"/api/tasks", "/api/supervisor"}) {
    auto r = http_request(s.port(), "GET", target);
    REQUIRE(r.status == 200);
    CHECK_MESSAGE(!has_exponent_number(r.body), r.body);
    (void)parse(r.body);
  }
  auto tasks = parse(http_request(s.port(), "GET", "/api/tasks").body).at("tasks").as_array();
  REQUIRE(tasks.size() == 3);
  CHECK(tasks[0].at("run_seconds").is_double());  // durations stay doubles
  CHECK(tasks[0].at("wait_seconds").is_double());
}

TEST_CASE("http: job events write fractions as people write them") {
  JobFixture f;
  HttpConnection c(f.port());
  c.send("POST", "/api/jobs/slow", R"({"doc": 10})");
  c.read_header();
  auto partial = c.read_body_until([](const std::string& b) { return test::contains(b, "half way"); });
  CHECK(test::contains(partial, "\"fraction\":0.5,"));
  f.release.set();
  auto body = c.read_body_until([](const std::string&) { return false; });
  CHECK(test::contains(body, "\"fraction\":1.0,"));
  CHECK_FALSE(has_exponent_number(body));
  auto listed = http_request(f.port(), "GET", "/api/jobs").body;
  CHECK(test::contains(listed, "\"fraction\":1.0,"));
  CHECK_FALSE(has_exponent_number(listed));
}

TEST_CASE("http: a job stream is one JSON array with one event per line") {
  JobFixture f;
  HttpConnection c(f.port());
  c.send("POST", "/api/jobs/slow", R"({"doc": 11})");
  c.read_header();
  CHECK(c.stream_header(test::http_t::field::content_type) == "application/json");
  c.read_body_until([](const std::string& b) { return test::contains(b, "half way"); });
  f.release.set();
  const auto body = c.read_body_until([](const std::string&) { return false; });
  REQUIRE(c.stream_done());
  const auto lines = lines_of(body);
  REQUIRE(lines.size() >= 2);
  CHECK(body.back() == '\n');
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string line = lines[i];
    REQUIRE(!line.empty());
    CHECK(line.front() == (i == 0 ? '[' : ','));
    line.erase(0, 1);
    if (i + 1 == lines.size()) {
      REQUIRE(line.back() == ']');
      line.pop_back();
    }
    CHECK(parse(line).is_object());
  }
  auto ev = events_of(body);  // and the whole body is still one array
  CHECK(ev.size() == lines.size());
  CHECK(ev.back().at("status").as_string() == "done");
}

TEST_CASE("http: Accept application/x-ndjson gets one JSON object per line") {
  JobFixture f;
  HttpConnection c(f.port());
  c.send("POST", "/api/jobs/slow", R"({"doc": 12})", {{"Accept", "application/x-ndjson"}});
  c.read_header();
  REQUIRE(c.stream_status() == 200);
  CHECK(c.stream_header(test::http_t::field::content_type) == "application/x-ndjson");
  c.read_body_until([](const std::string& b) { return test::contains(b, "half way"); });
  f.release.set();
  const auto body = c.read_body_until([](const std::string&) { return false; });
  REQUIRE(c.stream_done());
  const auto lines = lines_of(body);
  REQUIRE(lines.size() >= 2);
  for (const auto& line : lines) CHECK(parse(line).is_object());
  CHECK(parse(lines.back()).at("status").as_string() == "done");
}

TEST_CASE("http: Accept text/event-stream gets Server-Sent Events with ids") {
  JobFixture f;
  HttpConnection c(f.port());
  c.send("POST", "/api/jobs/slow", R"({"doc": 13})", {{"Accept", "text/html, text/event-stream;q=0.9"}});
  c.read_header();
  REQUIRE(c.stream_status() == 200);
  CHECK(c.stream_header(test::http_t::field::content_type) == "text/event-stream");
  c.read_body_until(has_half_way_event);
  f.release.set();
  const auto body = c.read_body_until([](const std::string&) { return false; });
  REQUIRE(c.stream_done());
  CHECK(body.size() >= 2);
  CHECK(body.substr(body.size() - 2) == "\n\n");
  const auto events = sse_events(body);
  REQUIRE(events.size() >= 2);
  const auto job_id = events.front().data.at("id").as_int64();
  std::optional<std::uint64_t> last_version;
  for (const auto& e : events) {
    const std::string prefix = std::to_string(job_id) + "-";
    REQUIRE(e.id.rfind(prefix, 0) == 0);
    const auto version = std::stoull(e.id.substr(prefix.size()));
    if (last_version) CHECK(version > *last_version);  // ids grow with the job's version
    last_version = version;
  }
  CHECK(events.back().data.at("status").as_string() == "done");

  // q=0 refuses a type: the JSON array then.
  auto refused = http_request(f.port(), "POST", "/api/jobs/slow", R"({"doc": 13})",
                              {{"Accept", "text/event-stream;q=0"}});
  CHECK(refused.content_type == "application/json");
  CHECK(events_of(refused.body).size() == 1);
}

TEST_CASE("http: GET a job and its events by type and id") {
  JobFixture f;
  f.release.set();
  auto done = events_of(http_request(f.port(), "POST", "/api/jobs/slow", R"({"doc": 14})").body);
  const auto id = std::to_string(done.back().at("id").as_int64());

  auto one = http_request(f.port(), "GET", "/api/jobs/slow/" + id);
  REQUIRE(one.status == 200);
  CHECK(parse(one.body).at("status").as_string() == "done");
  CHECK(parse(one.body).at("params").at("doc").as_int64() == 14);

  auto array = http_request(f.port(), "GET", "/api/jobs/slow/" + id + "/events");
  REQUIRE(array.status == 200);
  CHECK(events_of(array.body).back().at("status").as_string() == "done");
  auto sse = http_request(f.port(), "GET", "/api/jobs/slow/" + id + "/events", {}, sse_accept);
  REQUIRE(sse.status == 200);
  REQUIRE(sse_events(sse.body).size() == 1);
  CHECK(sse_events(sse.body)[0].id.rfind(id + "-", 0) == 0);

  CHECK(http_request(f.port(), "GET", "/api/jobs/slow/9999").status == 404);
  CHECK(http_request(f.port(), "GET", "/api/jobs/slow/x1").status == 404);
  CHECK(http_request(f.port(), "GET", "/api/jobs/other/" + id + "/events").status == 404);
  CHECK(http_request(f.port(), "GET", "/api/jobs/slow/" + id + "/nope").status == 404);
  auto post = http_request(f.port(), "POST", "/api/jobs/slow/" + id + "/events");
  CHECK(post.status == 405);
  CHECK(post.allow == "GET, HEAD");
}

TEST_CASE("http: a done job's result downloads as an attachment with its bytes") {
  JobFixture f;
  f.release.set();
  auto done = events_of(http_request(f.port(), "POST", "/api/jobs/slow", R"({"doc": 21})").body);
  REQUIRE(done.back().at("status").as_string() == "done");
  const auto id = std::to_string(done.back().at("id").as_int64());
  const auto info = f.jobs->find(std::stoull(id))->info();
  std::ifstream in(info.result_path, std::ios::binary);
  const std::string expected((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(!expected.empty());

  HttpConnection c(f.port());
  auto get = c.request("GET", "/api/jobs/slow/" + id + "/result");
  REQUIRE(get.status == 200);
  CHECK(get.body == expected);
  CHECK(get.content_type == "application/octet-stream");
  CHECK(get.content_length == std::to_string(expected.size()));
  const std::string name = "slow-" + info.key.substr(0, 10) + ".result";
  CHECK(get.content_disposition == "attachment; filename=\"" + name + "\"");
  // The job's JSON names the download the same way, and tells the times.
  auto one = parse(http_request(f.port(), "GET", "/api/jobs/slow/" + id).body).as_object();
  CHECK(one.at("result_name").as_string() == name);
  CHECK(one.at("finished_at").is_string());
  CHECK(one.at("run_seconds").as_double() >= 0);

  // HEAD: the same headers and length, no body (the next reply on the connection reads cleanly).
  auto head = c.head("/api/jobs/slow/" + id + "/result");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(head.content_length == std::to_string(expected.size()));
  CHECK(head.content_disposition == get.content_disposition);
  CHECK(c.request("GET", "/api/supervisor").status == 200);
}

TEST_CASE("http: a result download is 404 for an unknown job and 409 before the job is done") {
  JobFixture f;
  CHECK(http_request(f.port(), "GET", "/api/jobs/slow/9999/result").status == 404);
  CHECK(test::contains(err_of(http_request(f.port(), "GET", "/api/jobs/slow/9999/result")), "no job 9999"));
  CHECK(http_request(f.port(), "GET", "/api/jobs/nope/1/result").status == 404);
  CHECK(http_request(f.port(), "GET", "/api/jobs/slow/..%2F..%2Fetc%2Fpasswd/result").status == 404);
  CHECK(http_request(f.port(), "GET", "/api/jobs/slow/1/result/x").status == 404);

  HttpConnection c(f.port());
  c.send("POST", "/api/jobs/slow", R"({"doc": 22})");
  c.read_header();
  REQUIRE(f.half.wait_for());
  auto running = http_request(f.port(), "GET", "/api/jobs/slow/1/result");
  CHECK(running.status == 409);
  CHECK(test::contains(err_of(running), "is running: its result is not ready yet"));
  CHECK(http_request(f.port(), "POST", "/api/jobs/slow/1/result").status == 405);

  f.release.set();
  c.read_body_until([](const std::string&) { return false; });
  auto failed = events_of(http_request(f.port(), "POST", "/api/jobs/slow", R"({"fail": 1})").body);
  REQUIRE(failed.back().at("status").as_string() == "failed");
  const auto failed_id = std::to_string(failed.back().at("id").as_int64());
  auto r = http_request(f.port(), "GET", "/api/jobs/slow/" + failed_id + "/result");
  CHECK(r.status == 409);
  CHECK(test::contains(err_of(r), "failed, so it has no result (asked to fail)"));

  // A done job whose file left storage: 404, not a 500.
  std::filesystem::remove(f.jobs->find(1)->info().result_path);
  auto gone = http_request(f.port(), "GET", "/api/jobs/slow/1/result");
  CHECK(gone.status == 404);
  CHECK(test::contains(err_of(gone), "no longer in storage"));
}

TEST_CASE("http: a result download needs the token when one is set") {
  JobFixture f({.token = "s3cret"});
  f.release.set();
  auto done = events_of(
      http_request(f.port(), "POST", "/api/jobs/slow", R"({"doc": 23})", {{"Authorization", "Bearer s3cret"}})
          .body);
  const auto target = "/api/jobs/slow/" + std::to_string(done.back().at("id").as_int64()) + "/result";
  auto no = http_request(f.port(), "GET", target);
  CHECK(no.status == 401);
  CHECK(no.www_authenticate == "Bearer");
  CHECK(http_request(f.port(), "GET", target, {}, {{"Authorization", "Bearer wrong"}}).status == 401);
  // Without the token nobody learns which jobs exist either.
  CHECK(http_request(f.port(), "GET", "/api/jobs/slow/9999/result").status == 401);
  auto yes = http_request(f.port(), "GET", target, {}, {{"Authorization", "Bearer s3cret"}});
  CHECK(yes.status == 200);
  CHECK(yes.body == R"(result of {"doc":23})");
  CHECK(http_request(f.port(), "GET", "/api/jobs").status == 200);  // other reads stay open
}

TEST_CASE("http: a result above max_result_size is refused with its size") {
  JobFixture f({.max_result_size = 8});
  f.release.set();
  auto done = events_of(http_request(f.port(), "POST", "/api/jobs/slow", R"({"doc": 24})").body);
  auto r = http_request(f.port(), "GET",
                        "/api/jobs/slow/" + std::to_string(done.back().at("id").as_int64()) + "/result");
  CHECK(r.status == 500);
  CHECK(test::contains(err_of(r), "more than the 8 this server sends"));
}

TEST_CASE("http: an SSE client resuming with Last-Event-ID gets later events only") {
  JobFixture f;
  HttpConnection a(f.port());
  a.send("POST", "/api/jobs/slow", R"({"doc": 15})", sse_accept);
  a.read_header();
  const auto seen = sse_events(a.read_body_until(has_half_way_event));
  REQUIRE(!seen.empty());
  const SseEvent& half = seen.back();
  REQUIRE(half.data.at("message").as_string() == "half way");
  const auto job = std::to_string(half.data.at("id").as_int64());
  const auto half_version = std::stoull(half.id.substr(job.size() + 1));
  const std::string events = "/api/jobs/slow/" + job + "/events";

  // Resuming at the half-way event: nothing until the job moves on.
  HttpConnection b(f.port());
  b.send("GET", events, {}, {{"Accept", "text/event-stream"}, {"Last-Event-ID", half.id}});
  b.read_header();
  REQUIRE(b.stream_status() == 200);
  // Resuming at an earlier event: what it missed, as the latest state.
  HttpConnection c(f.port());
  c.send("GET", events, {},
         {{"Accept", "text/event-stream"}, {"Last-Event-ID", job + "-" + std::to_string(half_version - 1)}});
  c.read_header();
  auto replayed = sse_events(c.read_body_until(has_half_way_event));
  REQUIRE(replayed.size() == 1);
  CHECK(replayed[0].id == half.id);
  // Another job's id is no resume point: the stream starts from the current state.
  HttpConnection d(f.port());
  d.send("GET", events, {}, {{"Accept", "text/event-stream"}, {"Last-Event-ID", "999999-1"}});
  d.read_header();
  CHECK(sse_events(d.read_body_until(has_half_way_event)).at(0).id == half.id);

  f.release.set();
  const auto later = sse_events(b.read_body_until([](const std::string&) { return false; }));
  REQUIRE(!later.empty());
  for (const auto& e : later) {
    CHECK(e.data.at("message").as_string() != "half way");
    CHECK(std::stoull(e.id.substr(job.size() + 1)) > half_version);
  }
  CHECK(later.back().data.at("status").as_string() == "done");

  // Resuming at the final event: 204, which tells an EventSource to stop.
  auto end = http_request(f.port(), "GET", events, {},
                          {{"Accept", "text/event-stream"}, {"Last-Event-ID", later.back().id}});
  CHECK(end.status == 204);
  CHECK(end.body.empty());
}

TEST_CASE("http: HEAD is answered wherever GET is with the same headers and no body") {
  Served s;
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "ev"});  // never started: its JSON does not change
  s.start();
  HttpConnection c(s.port());
  for (const char* target : {"/", "/api/workers/ev"}) {
    auto head = c.head(target);
    REQUIRE(head.status == 200);
    CHECK(head.body.empty());
    // The next request on the same connection reads cleanly: no body was sent.
    auto get = c.request("GET", target);
    REQUIRE(get.status == 200);
    CHECK(head.content_type == get.content_type);
    CHECK(head.content_length == std::to_string(get.body.size()));
  }
  auto metrics = c.head("/metrics");  // built on the pool like its GET
  CHECK(metrics.status == 200);
  CHECK(test::contains(metrics.content_type, "text/plain"));
  CHECK(std::stoul(metrics.content_length) > 0);
  auto missing = c.head("/api/workers/nope");
  CHECK(missing.status == 404);
  auto post_only = c.head("/api/workers/ev/trigger");
  CHECK(post_only.status == 405);
  CHECK(post_only.allow == "POST");
  CHECK(c.request("GET", "/api/supervisor").status == 200);
}

TEST_CASE("http: the bearer scheme is matched case-insensitively") {
  Served s({.token = "s3cret"});
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "ev"});
  s.start();
  ev->start();
  auto with = [&](const std::string& auth) {
    return http_request(s.port(), "POST", "/api/workers/ev/trigger", {}, {{"Authorization", auth}}).status;
  };
  CHECK(with("Bearer s3cret") == 200);
  CHECK(with("bearer s3cret") == 200);
  CHECK(with("BEARER s3cret") == 200);
  CHECK(with("bEaReR  s3cret") == 200);  // 1*SP
  CHECK(with("Bearer S3CRET") == 401);   // the token itself is exact
  CHECK(with("Bearers3cret") == 401);
  CHECK(with("Basic s3cret") == 401);
  CHECK(with("Bearer s3cre") == 401);
  CHECK(with("Bearer s3cret2") == 401);
}

TEST_CASE("http: an incomplete request gets 408 before its connection closes") {
  Served s({.request_timeout = 300ms});
  s.start();
  auto outcome = [&](const std::string& part) {
    HttpConnection c(s.port());
    if (!part.empty()) boost::asio::write(c.socket(), boost::asio::buffer(part));
    return read_to_close(c);
  };
  for (const std::string& part :
       {std::string("GET /api/supervisor HTTP/1.1\r\nHo"),  // headers unfinished
        std::string(
            "POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")}) {  // short body
    const std::string got = outcome(part);
    REQUIRE_MESSAGE(got.rfind("HTTP/1.1 408 ", 0) == 0, got);
    const auto body = got.substr(got.find("\r\n\r\n") + 4);
    CHECK(test::contains(json::value_to<std::string>(parse(body).at("error")), "request_timeout (300 ms)"));
    CHECK(test::contains(got, "Connection: close"));
  }
  // A connection that sent nothing is just closed.
  CHECK(outcome({}).empty());
  REQUIRE(test::eventually([&] { return s.server->stats().timeouts == 3; }));
}

TEST_CASE("http: a bad queue item is described without library internals") {
  Served s;
  auto nums = atask::queue_worker<int>(s.sv, [](int) {}, {.name = "nums"});
  auto bytes = atask::queue_worker<std::uint8_t>(s.sv, [](std::uint8_t) {}, {.name = "bytes"});
  auto words = atask::queue_worker<std::string>(s.sv, [](std::string) {}, {.name = "words"});
  auto lists = atask::queue_worker<std::vector<int>>(s.sv, [](std::vector<int>) {}, {.name = "lists"});
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "ev"});
  auto bg = atask::background_worker(s.sv, [] {}, {.name = "bg"});
  s.start();
  nums->start();
  bytes->start();
  words->start();
  lists->start();
  auto put = [&](const std::string& worker, const std::string& item) {
    auto r = http_request(s.port(), "POST", "/api/workers/" + worker + "/put", item);
    CHECK(r.status == 400);
    const auto e = err_of(r);
    CHECK_MESSAGE(!test::contains(e, "boost"), e);
    CHECK_MESSAGE(!test::contains(e, ".hpp"), e);
    return e;
  };
  CHECK(test::contains(put("nums", "1.5"), "expected an integer, got 1.5"));
  CHECK(test::contains(put("nums", "\"x\""), "expected an integer, got \"x\""));
  CHECK(test::contains(put("nums", "3000000000"),
                       "expected an integer from -2147483648 to 2147483647, got 3000000000"));
  CHECK(test::contains(put("bytes", "300"), "expected an integer from 0 to 255, got 300"));
  CHECK(test::contains(put("words", "1"), "expected a string, got 1"));
  CHECK(test::contains(put("lists", "[1,\"x\"]"), "not a number, got [1,\"x\"]"));
  CHECK(test::contains(put("lists", "{}"), "got {}"));

  auto not_queue = http_request(s.port(), "POST", "/api/workers/ev/put", "1");
  CHECK(test::contains(err_of(not_queue), "is an event worker, not a queue worker"));
  auto no_trigger = http_request(s.port(), "POST", "/api/workers/bg/trigger");
  CHECK(test::contains(err_of(no_trigger), "is a background worker"));

  // Beast's terse words ("bad Content-Length") become a sentence.
  HttpConnection c(s.port());
  boost::asio::write(c.socket(),
                     boost::asio::buffer(std::string(
                         "POST /api/workers/nums/put HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n1")));
  const std::string got = read_to_close(c);
  REQUIRE(got.rfind("HTTP/1.1 400 ", 0) == 0);
  CHECK(json::value_to<std::string>(parse(got.substr(got.find("\r\n\r\n") + 4)).at("error")) ==
        "malformed request: the Content-Length header is not a number in range");
  nums->stop();
  bytes->stop();
  words->stop();
  lists->stop();
}
