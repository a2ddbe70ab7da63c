#pragma once
// GET /api/events, the dashboard's pushed updates (docs/http.md): what the
// page shows, as one state built on the pool, and the Server-Sent Events
// that carry it - a snapshot first, then only what changed. Independent of
// Beast; src/http/server_streams.cpp writes the stream.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace atask {
class Supervisor;
}

namespace atask::http::detail {

class Api;
struct JobsRef;

/// Everything the dashboard shows, as JSON texts, so that two states
/// compare item by item (a worker, a job) without building JSON again.
struct DashboardState {
  std::chrono::steady_clock::time_point read_at;  ///< when the reading began
  std::string supervisor;  ///< GET /api/supervisor without uptime_seconds (it changes every time)
  /// What decides whether the supervisor changed: `supervisor` without the
  /// pool's completed_total, which every read itself raises by one (it runs
  /// on the pool), as the other pool reads of the API do.
  std::string supervisor_key;
  double uptime_seconds = 0;
  std::vector<std::pair<std::string, std::string>> workers;  ///< name, JSON: creation order
  std::string tasks;                                         ///< the newest 30 tasks, a JSON array
  bool has_jobs = false;                                     ///< the server has a Jobs
  std::string job_types;                                     ///< JSON array
  std::vector<std::pair<std::uint64_t, std::string>> jobs;   ///< id, JSON: by id
};

/// How many tasks the state carries, the newest (what the dashboard lists).
inline constexpr std::size_t dashboard_tasks = 30;

/// Starts a state with the supervisor's JSON (api.supervisor_json()). Call
/// it on the loop thread, like GET /api/supervisor, before the rest is read
/// on the pool: read there, the pool's counts would include the read.
DashboardState dashboard_state(const Api& api);
/// Reads the workers, the newest tasks and the jobs (if the server has a
/// Jobs) into `s`. Takes milliseconds with thousands of workers: call it on
/// the pool.
void read_dashboard(DashboardState& s, Supervisor& sv, JobsRef& jobs);

/// "event: snapshot": the whole state.
std::string snapshot_event(const DashboardState& s);

/// "event: update": what changed from `before` to `now` (the supervisor if
/// it changed, the workers and jobs that changed or are new, the names and
/// ids of those gone, the task list if it changed); nullopt when nothing
/// did. Every update carries uptime_seconds.
std::optional<std::string> update_event(const DashboardState& before, const DashboardState& now);

/// The comment line that keeps an idle stream open through proxies.
inline constexpr std::string_view keepalive_comment = ": keep-alive\n\n";

}  // namespace atask::http::detail
