#pragma once
// The control plane's routes, independent of Beast: a parsed request in, a
// reply (or a job stream to start) out. src/http/server.cpp does the I/O.

#include <atask/http/server.hpp>
#include <atask/jobs/jobs.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace atask::http::detail {

extern const char dashboard_html[];
extern const std::size_t dashboard_html_size;

struct Request {
  std::string_view method;  // "GET", "HEAD", "POST", ...; HEAD is routed as GET
  std::string_view target;  // raw request target: path and query
  std::string_view body;
  std::string_view accept;         // the Accept header: a job stream's format
  std::string_view last_event_id;  // the Last-Event-ID header: where an SSE client resumes
  bool authorized = true;          // false: a token is set and the request does not carry it
};

struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::string allow{};                // 405: the methods the path takes
  std::string content_disposition{};  // a download: attachment; filename="..."
  /// HEAD of a download: the length GET would send, without reading the file.
  std::optional<std::uint64_t> head_length{};
};

/// How a job stream is written, chosen by the request's Accept header.
enum class StreamFormat : unsigned char {
  json_array,  ///< default: one JSON array, one event per line
  ndjson,      ///< application/x-ndjson: one JSON object per line
  sse,         ///< text/event-stream: Server-Sent Events with ids
};

/// text/event-stream if the Accept header names it (q > 0), else
/// application/x-ndjson if it names that, else the JSON array.
StreamFormat stream_format(std::string_view accept);

/// An SSE event's id: "<job id>-<version>".
std::string event_id(const JobInfo& j);

/// The version a Last-Event-ID names for this job; nullopt when it is empty,
/// malformed or names another job.
std::optional<std::uint64_t> resume_version(std::string_view last_event_id, std::uint64_t job_id);

/// POST /api/jobs/{type}, GET /api/jobs/{type}/{id}/events: the server
/// streams this job's progress.
struct StreamJob {
  Job job;
  StreamFormat format = StreamFormat::json_array;
  /// SSE only: the job version the client saw last (Last-Event-ID).
  std::optional<std::uint64_t> seen;
};

/// Work that may block (a worker's start/stop hooks are user code) or take
/// long (a /metrics reply with thousands of series): the server runs it on a
/// pool thread at critical priority - so it never waits behind the
/// service's own work - and sends its reply.
struct OnPool {
  std::function<Reply()> run;
  /// Reads take one of the server's few build slots (so a flood of
  /// /metrics requests costs at most that many pool threads); worker
  /// control does not (a slow hook must not hold up monitoring).
  bool read = true;
};

/// GET /api/events: the server streams the dashboard's state (events.hpp),
/// if fewer than ServerOptions::max_event_streams are open.
struct EventStream {};

using Outcome = std::variant<Reply, StreamJob, OnPool, EventStream>;

/// What an exception says, for a reply: a boost::system::system_error
/// (Boost.JSON, Asio) gives its code's message, never the source location
/// its what() appends; anything else its what().
std::string message_of(const std::exception& e);

/// A JSON error reply: {"error": message, "status": status}.
Reply error_reply(int status, std::string_view message, std::string allow = {});

/// The control plane's own series (atask_http_*), appended to GET /metrics
/// (metrics.cpp).
std::string server_metrics_text(const ServerStats& stats);
/// The job series of /metrics (atask_job_held by type and status).
std::string jobs_metrics_text(const Jobs& jobs);

/// The last /metrics text and when it was built (ServerOptions::metrics_cache).
struct MetricsCache {
  std::mutex m;
  std::chrono::steady_clock::time_point built{};
  std::string text;
  bool valid = false;
};

/// The server's Jobs, which a program may destroy while the server still
/// runs: the Api uses it under `m` only, and ~Jobs sets `p` to null
/// (Jobs::when_destroyed) - a request then gets 503, never a dangling Jobs.
struct JobsRef {
  std::mutex m;
  Jobs* p = nullptr;
  bool configured = false;  // ServerOptions::jobs was set
};

/// Routes one request. Never throws: every failure is a reply. Runs on the
/// supervisor's loop thread, so nothing here blocks.
class Api {
 public:
  /// `stats` reads the server's counters for /metrics; it is called on a
  /// pool thread while the request that asked is in flight.
  Api(Supervisor& sv, const ServerOptions& opt, std::shared_ptr<JobsRef> jobs,
      std::chrono::steady_clock::time_point started, std::function<ServerStats()> stats)
      : sv_(sv), opt_(opt), jobs_(std::move(jobs)), started_(started), stats_(std::move(stats)) {}

  Outcome handle(const Request& r) const;

  /// One progress event of a job stream.
  static std::string job_event(const JobInfo& j);

  boost::json::object supervisor_json() const;
  static boost::json::object worker_json(const WorkerInfo& w);
  static boost::json::object job_json(const JobInfo& j);
  /// One task: its times as UTC (from `wall_now` and its distance from `now`).
  static boost::json::object task_json(const TaskInfo& t, std::chrono::steady_clock::time_point now,
                                       std::chrono::system_clock::time_point wall_now);
  /// The newest `limit` tasks (of one status, if given), oldest first.
  static boost::json::array tasks_json(Supervisor& sv, std::optional<TaskStatus> only, std::size_t limit);
  /// A done job's result as a download names it: "<type>-<first 10 hex
  /// digits of the key><extension>" ("report-1a2b3c4d5e.result"); empty
  /// unless the job has a result.
  static std::string result_name(const JobInfo& j);

 private:
  Outcome route(const Request& r, const std::vector<std::string>& seg, std::string_view query) const;
  Outcome cluster_route(const Request& r, const std::vector<std::string>& seg, std::string_view query) const;
  // Replies that can take milliseconds to build (thousands of workers,
  // tasks or series) are built on the pool, so the loop's timers stay on time.
  static Reply workers_get(Supervisor& sv, const std::string& name);  // empty name: all
  static Reply tasks_get(Supervisor& sv, std::string_view query);
  static Reply task_get(Supervisor& sv, const std::string& digits);
  Outcome worker_post(const std::string& name, const std::string& action, std::string_view body) const;
  Reply jobs_get(Jobs& jobs, std::string_view query) const;
  Outcome job_get(Jobs& jobs, const Request& r, const std::vector<std::string>& seg) const;
  Outcome jobs_post(Jobs& jobs, const std::string& type, const Request& r) const;
  Outcome job_result(const JobInfo& j, bool head) const;

  Supervisor& sv_;
  const ServerOptions& opt_;
  std::shared_ptr<JobsRef> jobs_;
  std::chrono::steady_clock::time_point started_;
  std::function<ServerStats()> stats_;
  std::shared_ptr<MetricsCache> metrics_cache_ = std::make_shared<MetricsCache>();
};

/// Splits "/a/b%20c?x=1" into decoded segments {"a", "b c"} and the query
/// "x=1". Nullopt for a target that is not origin-form, a bad %-escape, or a
/// decoded segment with a NUL or control character.
std::optional<std::vector<std::string>> split_path(std::string_view target, std::string_view& query);

/// Whether an Authorization header carries the token with the Bearer
/// scheme. The scheme is matched case-insensitively (RFC 7235: "bearer",
/// "BEARER"), one or more spaces may follow it, and the token is compared in
/// constant time.
bool bearer_matches(std::string_view header, std::string_view token) noexcept;

/// Whether `given` is the token, compared in constant time.
bool token_equals(std::string_view given, std::string_view token) noexcept;

/// True for 127.0.0.0/8 and ::1.
bool is_loopback(std::string_view address);

}  // namespace atask::http::detail
