#pragma once
/// @file
/// The HTTP control plane: a JSON API, Prometheus metrics, a live dashboard
/// and progress-streaming jobs, served by Boost.Beast from the supervisor's
/// io_context. Off unless enabled; binds 127.0.0.1 by default. Link
/// atask::http. See docs/http.md for every endpoint.
///
/// @code
///   atask::Supervisor sv({.id = "svc"});
///   atask::Jobs jobs(sv, {.storage_dir = "jobs"});
///   auto http = atask::http::serve(sv, {.port = 8080, .jobs = &jobs});
///   sv.start();  // ... -> workers -> http: "http: serving on http://127.0.0.1:8080"
/// @endcode

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace atask {
class Supervisor;
class Jobs;
}  // namespace atask

namespace atask::http {

/// What a server shows of a cluster besides its own supervisor: the API
/// server of the distributed mode (`atask api`; atask::cluster::view() in
/// cluster/view.hpp is one backed by Redis). Called on pool threads, so it
/// may block. What it throws becomes the reply: NotFoundError 404,
/// OptionsError 400, anything else 503.
class ClusterSource {
 public:
  virtual ~ClusterSource() = default;
  /// GET /api/cluster: a JSON object (workers, queues, totals).
  virtual std::string snapshot() = 0;
  /// Appended to GET /metrics: Prometheus text exposition (HELP, TYPE and
  /// samples) of metric names other than the supervisor's.
  virtual std::string metrics() = 0;
  /// GET /api/cluster/queues/<queue>/dead?limit=N: a JSON object {"dead": [...]}.
  virtual std::string dead_letters(const std::string& queue, std::size_t limit) = 0;
  /// POST /api/cluster/queues/<queue>/dead/<entry>/requeue: the task id.
  virtual std::string requeue(const std::string& queue, const std::string& entry) = 0;
  /// POST /api/cluster/queues/<queue>/dead/purge: how many were removed.
  virtual std::size_t purge_dead(const std::string& queue) = 0;
  /// POST /api/cluster/tasks: sends the task a JSON object describes (name,
  /// args, queue, priority, countdown, eta, idempotency_key; docs/http.md);
  /// returns a JSON object with its id. OptionsError for a bad request.
  virtual std::string send_task(const std::string& request) = 0;
  /// GET /api/cluster/tasks/<id>: a JSON object of what Redis knows of the
  /// task (state, result or error, attempts, times). NotFoundError when
  /// Redis does not know it.
  virtual std::string task(const std::string& id) = 0;
};

struct ServerOptions {
  /// An IPv4 or IPv6 address. Anything but loopback requires `token`
  /// (OptionsError otherwise).
  std::string address = "127.0.0.1";
  /// 0 = an ephemeral port (Server::port() tells which).
  unsigned short port = 8080;
  /// Bearer token. When set, mutating requests (POST), job result
  /// downloads (GET /api/jobs/{type}/{id}/result) and the dashboard's event
  /// stream (GET /api/events) need "Authorization: Bearer <token>" (401
  /// without it); the event stream also takes it as ?token=, since a
  /// browser's EventSource cannot send headers. Other reads stay open.
  std::string token{};
  /// Request bodies above this get 413.
  std::size_t max_body_size = 1 << 20;
  /// Request line + headers above this get 431.
  std::size_t max_header_size = 16 * 1024;
  /// A client must send a whole request within this time from the moment
  /// the connection opened or the previous response was sent (so it is
  /// also the keep-alive idle limit), and must take each response within
  /// it; otherwise the connection is closed.
  std::chrono::milliseconds request_timeout{10'000};
  /// Connections beyond this many are closed as soon as they are accepted.
  std::size_t max_connections = 1024;
  /// Jobs served under /api/jobs (nullptr: no jobs, 404). If the Jobs is
  /// destroyed while the server still runs, the server lets go of it and
  /// answers 503 from then on.
  Jobs* jobs = nullptr;
  /// Serve the dashboard at GET /.
  bool dashboard = true;
  /// A cluster to show under /api/cluster, on /metrics and in the
  /// dashboard's Cluster section (nullptr: none, 404).
  std::shared_ptr<ClusterSource> cluster{};
  /// GET /metrics serves the text it built within this time again instead
  /// of building it anew (with 1,000 workers a build takes milliseconds, and
  /// several scrapers would each pay for it). 0 = build for every scrape.
  std::chrono::milliseconds metrics_cache{1'000};
  /// GET /api/jobs/{type}/{id}/result reads the result file into memory
  /// (replies are built whole); a larger file gets 500 with its size in the
  /// message instead.
  std::uint64_t max_result_size = std::uint64_t{64} << 20;
  /// GET /api/events (the dashboard's pushed updates): streams open at once
  /// beyond this many get 503 (the page then polls). 0 turns the stream off.
  std::size_t max_event_streams = 64;
  /// GET /api/events reads the state at this pace and sends what changed,
  /// only when something did.
  std::chrono::milliseconds events_interval{1'000};
  /// GET /api/events sends a comment line after this long without an event,
  /// so that proxies do not close an idle stream.
  std::chrono::milliseconds events_keepalive{15'000};
};

/// Counters of the server itself.
struct ServerStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;  ///< above max_connections
  std::size_t connections_open = 0;
  std::uint64_t requests = 0;  ///< requests answered (any status)
  /// requests by status class: [0] 1xx, [1] 2xx, [2] 3xx, [3] 4xx, [4] 5xx
  std::array<std::uint64_t, 5> requests_by_class{};
  std::uint64_t client_errors = 0;     ///< answered with 4xx, or closed for a malformed request
  std::uint64_t timeouts = 0;          ///< connections closed by request_timeout
  std::size_t streams_open = 0;        ///< job progress streams being written
  std::size_t event_streams_open = 0;  ///< GET /api/events streams being written
};

/// The control plane that serve() set up: a handle (a value; copies are the
/// same server). It runs on the supervisor's io_context, from the "http"
/// step's start to its stop, whether or not a handle is kept; the handle
/// reads its state.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, except url() while
/// Supervisor::start() runs the "http" step (call it once start() returned).
class Server {
 public:
  /// The bound port (meaningful once the "http" step has started).
  unsigned short port() const noexcept;
  const ServerOptions& options() const noexcept;
  ServerStats stats() const;
  /// "http://<address>:<port>".
  std::string url() const;

  struct Impl;  // src/http/server.cpp

 private:
  friend Server serve(Supervisor& sv, ServerOptions options);
  explicit Server(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

/// Adds the step "http" (depends on "workers", so it stops before the
/// workers do) that binds and serves. Call before sv.start().
/// @throws OptionsError for bad options (checked here; the bind itself
///         happens in the step: an address in use makes start() throw).
Server serve(Supervisor& sv, ServerOptions options = {});

/// The supervisor's metrics in the Prometheus text format (what GET
/// /metrics serves), for users who expose them elsewhere.
std::string prometheus_text(const Supervisor& sv);

}  // namespace atask::http
