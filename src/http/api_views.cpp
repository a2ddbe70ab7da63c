// The control plane's JSON views of the supervisor, its workers, tasks and
// jobs (see api.hpp and docs/http.md).
#include "http/api.hpp"
#include "supervisor/access.hpp"
#include "util/json_text.hpp"

#include <ctime>
#include <cstdio>

namespace atask::http::detail {

namespace json = boost::json;
using clock = std::chrono::steady_clock;

namespace {

template <class A>
json::object by_priority(const A& a) {
  json::object o;
  for (Priority p : all_priorities) o[to_string(p)] = a[index(p)];
  return o;
}

std::string iso8601(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

double seconds(clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

json::object Api::worker_json(const WorkerInfo& w) {
  json::object o;
  o["name"] = w.name;
  o["kind"] = to_string(w.kind);
  o["state"] = to_string(w.state);
  o["priority"] = to_string(w.priority);
  o["coroutine"] = w.coroutine;
  o["runs"] = w.runs;
  o["errors"] = w.errors;
  o["last_run"] = w.last_run ? json::value(iso8601(*w.last_run)) : json::value(nullptr);
  o["last_error"] = w.last_error_at ? json::value(w.last_error) : json::value(nullptr);
  o["last_error_at"] = w.last_error_at ? json::value(iso8601(*w.last_error_at)) : json::value(nullptr);
  o["queue_length"] = w.queue_length;
  o["pending_runs"] = w.pending_runs;
  o["skipped_ticks"] = w.skipped_ticks;
  o["triggers_dropped"] = w.triggers_dropped;
  o["can_trigger"] = w.can_trigger;
  o["can_put"] = w.accepts_json;
  return o;
}

json::object Api::job_json(const JobInfo& j) {
  json::object o;
  o["id"] = j.id;
  o["type"] = j.type;
  o["key"] = j.key;
  o["params"] = j.params;
  o["status"] = to_string(j.status);
  o["fraction"] = j.fraction;
  o["message"] = j.message;
  o["error"] = j.error;
  o["result"] = j.result_path.empty() ? json::value(nullptr) : json::value(j.result_path.filename().string());
  o["result_name"] = j.result_path.empty() ? json::value(nullptr) : json::value(result_name(j));
  o["from_storage"] = j.from_storage;
  auto when = [](const std::optional<JobInfo::time_point>& t) {
    return t ? json::value(iso8601(*t)) : json::value(nullptr);
  };
  o["created_at"] = when(j.created_at);
  o["started_at"] = when(j.started_at);
  o["finished_at"] = when(j.finished_at);
  // Started to finished, or to now while it runs; null before it starts.
  o["run_seconds"] =
      j.started_at ? json::value(std::chrono::duration<double>(
                                     (j.finished_at ? *j.finished_at : std::chrono::system_clock::now()) -
                                     *j.started_at)
                                     .count())
                   : json::value(nullptr);
  return o;
}

std::string Api::result_name(const JobInfo& j) {
  if (j.result_path.empty()) return {};
  // The type is [A-Za-z0-9_.-] (Jobs::add_type) and the key hex digits, so
  // the name needs no quoting in Content-Disposition.
  return j.type + "-" + j.key.substr(0, 10) + j.result_path.extension().string();
}

std::string Api::job_event(const JobInfo& j) {
  json::object o;
  o["id"] = j.id;
  o["status"] = to_string(j.status);
  o["fraction"] = j.fraction;
  o["message"] = j.message;
  if (j.status == JobStatus::done) o["result"] = j.result_path.filename().string();
  if (j.status == JobStatus::failed) o["error"] = j.error;
  return atask::detail::json_text(o);
}

json::object Api::supervisor_json() const {
  const SupervisorInfo i = sv_.info();
  json::object o;
  o["id"] = i.id;
  o["state"] = to_string(i.state);
  o["uptime_seconds"] = seconds(clock::now() - started_);

  json::object pool;
  pool["pool_size"] = i.pool.limits.pool_size;
  pool["reserve_normal"] = i.pool.limits.reserve_normal;
  pool["reserve_high"] = i.pool.limits.reserve_high;
  pool["min_threads"] = i.pool.limits.min_threads;
  pool["max_threads"] = i.pool.limits.max_threads;
  pool["threads"] = i.pool.threads;
  pool["idle_threads"] = i.pool.idle_threads;
  pool["running"] = by_priority(i.pool.running);
  pool["queued"] = by_priority(i.pool.queued);
  pool["running_total"] = i.pool.running_total;
  pool["queued_total"] = i.pool.queued_total;
  pool["completed_total"] = i.pool.completed_total;
  o["pool"] = std::move(pool);

  json::object pr;
  pr["enabled"] = i.processes.enabled;
  if (i.processes.enabled) {
    const auto& p = i.processes;
    pr["pool_size"] = p.options.pool_size;
    pr["reserve_normal"] = p.options.reserve_normal;
    pr["reserve_high"] = p.options.reserve_high;
    pr["children"] = p.children;
    pr["idle_children"] = p.idle_children;
    pr["running"] = by_priority(p.running);
    pr["queued"] = by_priority(p.queued);
    pr["running_total"] = p.running_total;
    pr["queued_total"] = p.queued_total;
    pr["completed_total"] = p.completed_total;
    pr["spawned"] = p.spawned;
    pr["crashed"] = p.crashed;
    pr["killed"] = p.killed;
    pr["recycled"] = p.recycled;
  }
  o["processes"] = std::move(pr);

  json::array aloops;
  for (const auto& a : i.aloops)
    aloops.push_back(json::object{{"name", a.name}, {"default", a.is_default}, {"running", a.running}});
  o["aloops"] = std::move(aloops);

  json::array steps;
  for (const auto& s : i.steps) {
    json::array deps;
    for (const auto& d : s.depends_on) deps.push_back(json::value(d));
    steps.push_back(json::object{{"name", s.name},
                                 {"builtin", s.builtin},
                                 {"state", to_string(s.state)},
                                 {"depends_on", std::move(deps)}});
  }
  o["steps"] = std::move(steps);

  json::object tasks;
  tasks["submitted"] = by_priority(i.tasks.submitted);
  tasks["completed"] = by_priority(i.tasks.completed);
  tasks["failed"] = by_priority(i.tasks.failed);
  tasks["canceled"] = by_priority(i.tasks.canceled);
  o["tasks"] = std::move(tasks);
  o["active_tasks"] = i.active_tasks;
  o["workers"] = atask::detail::SupervisorAccess::worker_registry(sv_)->size();
  o["cluster"] = static_cast<bool>(opt_.cluster);  // /api/cluster is served (the dashboard asks only then)
  return o;
}

json::array Api::tasks_json(Supervisor& sv, std::optional<TaskStatus> only, std::size_t limit) {
  std::vector<TaskInfo> ts = sv.tasks(only);
  // Active tasks come first, then the history oldest first: order by id so
  // that "newest last" holds, and keep the newest `limit`.
  std::sort(ts.begin(), ts.end(), [](const TaskInfo& a, const TaskInfo& b) { return a.id < b.id; });
  const std::size_t from = ts.size() > limit ? ts.size() - limit : 0;
  const auto now = clock::now();
  const auto wall_now = std::chrono::system_clock::now();
  json::array a;
  for (std::size_t k = from; k < ts.size(); ++k) a.push_back(task_json(ts[k], now, wall_now));
  return a;
}

json::object Api::task_json(const TaskInfo& t, clock::time_point now,
                            std::chrono::system_clock::time_point wall_now) {
  json::object o;
  o["id"] = t.id;
  o["name"] = t.name;
  o["priority"] = to_string(t.priority);
  o["kind"] = to_string(t.kind);
  o["status"] = to_string(t.status);
  o["wait_seconds"] = t.queued_at ? json::value(seconds((t.started_at ? *t.started_at : now) - *t.queued_at))
                                  : json::value(nullptr);
  o["run_seconds"] = t.started_at
                         ? json::value(seconds((t.finished_at ? *t.finished_at : now) - *t.started_at))
                         : json::value(nullptr);
  o["error"] = t.error;
  // The task's times are steady-clock points (they never jump); as UTC they
  // are placed by their distance from now, so a clock step moves them all.
  auto when = [&](const std::optional<TaskInfo::time_point>& at) {
    if (!at) return json::value(nullptr);
    return json::value(
        iso8601(wall_now - std::chrono::duration_cast<std::chrono::system_clock::duration>(now - *at)));
  };
  o["queued_at"] = when(t.queued_at);
  o["started_at"] = when(t.started_at);
  o["finished_at"] = when(t.finished_at);
  // Process tasks: the child that ran it and how that child ended (null: no
  // child yet, it did not die, or not a process task).
  o["child_pid"] = t.child_pid > 0 ? json::value(t.child_pid) : json::value(nullptr);
  o["exit_signal"] = t.exit_signal > 0 ? json::value(t.exit_signal) : json::value(nullptr);
  o["exit_signal_name"] = json::value(nullptr);
  if (t.exit_signal > 0)
    if (const char* abbrev = ::sigabbrev_np(t.exit_signal))
      o["exit_signal_name"] = "SIG" + std::string(abbrev);
  o["exit_code"] = t.exit_code >= 0 ? json::value(t.exit_code) : json::value(nullptr);
  return o;
}

}  // namespace atask::http::detail
