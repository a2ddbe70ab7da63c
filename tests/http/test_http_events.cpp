// GET /api/events: the dashboard's pushed updates (a snapshot, then what
// changed), its token, its keep-alive comments and its stream limit.
#include "http_client.hpp"
#include "fixtures.hpp"

#include <atask/atask.hpp>
#include <atask/http.hpp>

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

namespace json = boost::json;
using namespace std::chrono_literals;
using test::http_request;
using test::HttpConnection;

namespace {

// A supervisor with an HTTP server on an ephemeral port; events every 20 ms
// unless the options say otherwise.
struct Served {
  explicit Served(atask::http::ServerOptions o = {}, atask::SupervisorOptions so = test::options("events", 4))
      : sv(so) {
    o.port = 0;
    if (o.events_interval == atask::http::ServerOptions{}.events_interval) o.events_interval = 20ms;
    server = atask::http::serve(sv, o);
  }
  unsigned short port() const { return server->port(); }

  atask::Supervisor sv;
  std::optional<atask::http::Server> server;
};

struct SseEvent {
  std::string name;  // "" for a comment
  std::string data;
  std::string comment;
};

// The complete events (up to a blank line) in a text/event-stream body.
std::vector<SseEvent> events_in(const std::string& body) {
  std::vector<SseEvent> out;
  std::size_t at = 0;
  for (auto end = body.find("\n\n"); end != std::string::npos; end = body.find("\n\n", at)) {
    SseEvent e;
    std::size_t line_at = at;
    while (line_at < end) {
      auto nl = body.find('\n', line_at);
      if (nl == std::string::npos || nl > end) nl = end;
      const std::string line = body.substr(line_at, nl - line_at);
      if (line.rfind("event: ", 0) == 0) e.name = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = line.substr(6);
      if (line.rfind(":", 0) == 0) e.comment = line.substr(1);
      line_at = nl + 1;
    }
    out.push_back(std::move(e));
    at = end + 2;
  }
  return out;
}

// Opens GET /api/events (target may carry a query) and reads its header.
void open_stream(HttpConnection& c, const std::string& target = "/api/events",
                 const test::Headers& headers = {}) {
  c.send("GET", target, {}, headers);
  c.read_header();
}

// Reads the stream until `pred` holds for one of its events; returns that event.
template <class Pred>
SseEvent read_until(HttpConnection& c, std::size_t& seen, Pred pred) {
  std::optional<SseEvent> found;
  c.read_body_until([&](const std::string& body) {
    auto evs = events_in(body);
    for (; seen < evs.size(); ++seen)
      if (pred(evs[seen])) {
        found = evs[seen++];
        return true;
      }
    return false;
  });
  REQUIRE_MESSAGE(found, "the event stream ended before the event came");
  return *found;
}

json::object worker_in(const json::value& list, std::string_view name) {
  for (const auto& w : list.as_array())
    if (w.at("name").as_string() == name) return w.as_object();
  return {};
}

}  // namespace

TEST_CASE("http: GET /api/events sends a snapshot first") {
  Served s;
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "flush"});
  s.sv.start();
  HttpConnection c(s.port());
  open_stream(c);
  REQUIRE(c.stream_status() == 200);
  CHECK(c.stream_header(test::http_t::field::content_type) == "text/event-stream");
  CHECK(c.stream_header(test::http_t::field::cache_control) == "no-store");
  std::size_t seen = 0;
  const auto first = read_until(c, seen, [](const SseEvent&) { return true; });
  REQUIRE(first.name == "snapshot");
  const auto d = json::parse(first.data).as_object();
  CHECK(d.at("supervisor").at("id").as_string() == "events");
  CHECK(d.at("supervisor").at("workers").as_int64() == 1);
  CHECK_FALSE(d.at("supervisor").as_object().contains("uptime_seconds"));  // top level, every event
  CHECK(d.at("uptime_seconds").is_double());
  CHECK(worker_in(d.at("workers"), "flush").at("kind").as_string() == "event");
  CHECK(d.at("tasks").is_array());
  CHECK(d.at("jobs").is_null());  // no Jobs on this server
  CHECK(s.server->stats().event_streams_open == 1);
}

TEST_CASE("http: a worker's change is pushed on the event stream without a poll") {
  Served s;
  test::Event ran;
  auto ev = atask::event_worker(s.sv, [&] { ran.set(); }, {.name = "flush"});
  s.sv.start();
  ev->start();
  HttpConnection c(s.port());
  open_stream(c);
  std::size_t seen = 0;
  const auto snap = read_until(c, seen, [](const SseEvent& e) { return e.name == "snapshot"; });
  CHECK(worker_in(json::parse(snap.data).at("workers"), "flush").at("runs").as_int64() == 0);
  const auto requests = s.server->stats().requests;

  REQUIRE(ev->trigger());  // in C++, not over HTTP
  REQUIRE(ran.wait_for());
  const auto upd = read_until(c, seen, [](const SseEvent& e) {
    if (e.name != "update") return false;
    const auto d = json::parse(e.data);
    const auto* ws = d.as_object().if_contains("workers");
    return ws && worker_in(*ws, "flush").contains("runs") &&
           worker_in(*ws, "flush").at("runs").as_int64() == 1;
  });
  const auto d = json::parse(upd.data).as_object();
  CHECK(d.at("uptime_seconds").is_double());
  CHECK(worker_in(d.at("workers"), "flush").at("last_run").is_string());
  CHECK(s.server->stats().requests == requests);  // nothing was asked for

  // Stopping the worker is a change too.
  ev->stop();
  read_until(c, seen, [](const SseEvent& e) {
    if (e.name != "update") return false;
    const auto d = json::parse(e.data);
    const auto* ws = d.as_object().if_contains("workers");
    return ws && worker_in(*ws, "flush").contains("state") &&
           worker_in(*ws, "flush").at("state").as_string() == "stopped";
  });
}

TEST_CASE("http: the event stream sends only changes and a keep-alive comment when idle") {
  // All pool threads from the start: a thread started on demand (by the
  // server's own reads) would be a change.
  auto so = test::options("events", 4);
  so.min_threads = 4;
  so.prespawn = true;
  Served s({.events_interval = 10ms, .events_keepalive = 150ms}, so);
  s.sv.start();
  HttpConnection c(s.port());
  open_stream(c);
  std::size_t seen = 0;
  read_until(c, seen, [](const SseEvent& e) { return e.name == "snapshot"; });
  // Nothing runs: after the first keep-alive comment (an update may come
  // before it, when the snapshot's reading and the first periodic one ran
  // at the same time and saw each other on the pool), the next thing sent
  // is a keep-alive comment again, not an update, though the state was
  // read a dozen times meanwhile.
  read_until(c, seen, [](const SseEvent& e) { return e.comment == " keep-alive"; });
  const auto next = read_until(c, seen, [](const SseEvent&) { return true; });
  CHECK_MESSAGE(next.name.empty(), "sent: " << next.data);
  CHECK(next.comment == " keep-alive");

  // A task is a change: the task list and the supervisor's counters.
  REQUIRE(s.sv.submit({.name = "visible"}, [] {}).wait_for(test::patience));
  const auto upd = read_until(c, seen, [](const SseEvent& e) { return e.name == "update"; });
  const auto d = json::parse(upd.data).as_object();
  REQUIRE(d.contains("tasks"));
  CHECK(d.at("tasks").as_array().back().at("name").as_string() == "visible");
  CHECK_FALSE(d.contains("workers"));  // none changed
  // The supervisor's counters change with it: in the same update, or (when
  // that reading came while the task was still running) in the next one.
  bool counters = d.contains("supervisor");
  if (!counters) {
    const auto more = read_until(c, seen, [](const SseEvent& e) { return e.name == "update"; });
    const auto d2 = json::parse(more.data).as_object();
    counters = d2.contains("supervisor");
    CHECK_FALSE(d2.contains("workers"));
  }
  CHECK(counters);
}

TEST_CASE("http: the event stream needs the token when one is set") {
  Served s({.token = "s3cr+t"});
  s.sv.start();
  auto denied = http_request(s.port(), "GET", "/api/events");
  CHECK(denied.status == 401);
  CHECK(test::contains(json::value_to<std::string>(json::parse(denied.body).at("error")), "?token="));
  CHECK(http_request(s.port(), "GET", "/api/events?token=wrong").status == 401);
  CHECK(http_request(s.port(), "GET", "/api/events?token=s3cr").status == 401);

  for (const auto& [target, headers] : std::vector<std::pair<std::string, test::Headers>>{
           {"/api/events?token=s3cr%2Bt", {}}, {"/api/events", {{"Authorization", "Bearer s3cr+t"}}}}) {
    HttpConnection c(s.port());
    open_stream(c, target, headers);
    CHECK(c.stream_status() == 200);
    std::size_t seen = 0;
    CHECK(read_until(c, seen, [](const SseEvent&) { return true; }).name == "snapshot");
  }
  // The query parameter is taken by this stream only.
  auto ev = atask::event_worker(s.sv, [] {}, {.name = "w"});
  CHECK(http_request(s.port(), "POST", "/api/workers/w/trigger?token=s3cr%2Bt").status == 401);
}

TEST_CASE("http: event streams beyond max_event_streams get 503") {
  Served s({.max_event_streams = 2});
  s.sv.start();
  std::vector<std::unique_ptr<HttpConnection>> open;
  for (int i = 0; i < 2; ++i) {
    open.push_back(std::make_unique<HttpConnection>(s.port()));
    open_stream(*open.back());
    REQUIRE(open.back()->stream_status() == 200);
    std::size_t seen = 0;
    read_until(*open.back(), seen, [](const SseEvent& e) { return e.name == "snapshot"; });
  }
  auto refused = http_request(s.port(), "GET", "/api/events");
  CHECK(refused.status == 503);
  CHECK(test::contains(json::value_to<std::string>(json::parse(refused.body).at("error")),
                       "max_event_streams = 2"));
  CHECK(http_request(s.port(), "GET", "/api/supervisor").status == 200);  // polling still works

  open.front()->close();  // a client leaves: its place is free again
  REQUIRE(test::eventually([&] { return s.server->stats().event_streams_open == 1; }));
  HttpConnection again(s.port());
  open_stream(again);
  CHECK(again.stream_status() == 200);

  Served off({.max_event_streams = 0});
  off.sv.start();
  CHECK(http_request(off.port(), "GET", "/api/events").status == 503);
}

TEST_CASE("http: serve refuses an events_interval or events_keepalive of 0") {
  atask::Supervisor sv(test::options("bad"));
  CHECK_THROWS_AS(atask::http::serve(sv, {.port = 0, .events_interval = 0ms}), atask::OptionsError);
  CHECK_THROWS_AS(atask::http::serve(sv, {.port = 0, .events_keepalive = 0ms}), atask::OptionsError);
}
