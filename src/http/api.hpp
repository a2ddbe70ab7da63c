#pragma once
// The control plane's routes, independent of Beast: a parsed request in, a
// reply (or a job stream to start) out. src/http/server.cpp does the I/O.

#include <atask/http/server.hpp>
#include <atask/jobs/jobs.hpp>
#include <atask/supervisor/supervisor.hpp>

#include "http/request.hpp"

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

}  // namespace atask::http::detail
