// The dashboard's pushed updates: its state and the events that carry it
// (see events.hpp and docs/http.md, GET /api/events).
#include "http/events.hpp"
#include "http/api.hpp"
#include "util/json_text.hpp"

#include <atask/jobs/jobs.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <map>

namespace atask::http::detail {

namespace json = boost::json;
using atask::detail::json_text;

DashboardState dashboard_state(const Api& api) {
  DashboardState s;
  s.read_at = std::chrono::steady_clock::now();
  json::object sup = api.supervisor_json();
  if (auto* up = sup.if_contains("uptime_seconds"); up && up->is_double()) s.uptime_seconds = up->as_double();
  sup.erase("uptime_seconds");
  s.supervisor = json_text(sup);
  if (auto* pool = sup.if_contains("pool"); pool && pool->is_object())
    pool->as_object().erase("completed_total");
  s.supervisor_key = json_text(sup);
  return s;
}

void read_dashboard(DashboardState& s, Supervisor& sv, JobsRef& jobs) {
  for (const auto& w : sv.workers()) s.workers.emplace_back(w.name, json_text(Api::worker_json(w)));
  s.tasks = json_text(Api::tasks_json(sv, std::nullopt, dashboard_tasks));
  std::lock_guard lk(jobs.m);  // ~Jobs clears p under it
  if (jobs.p) {
    s.has_jobs = true;
    json::array types;
    for (const auto& t : jobs.p->types()) types.push_back(json::value(t));
    s.job_types = json_text(types);
    for (const auto& j : jobs.p->list()) s.jobs.emplace_back(j.id, json_text(Api::job_json(j)));
    std::sort(s.jobs.begin(), s.jobs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  }
}

namespace {

// The texts are JSON already: events are put together as text.
template <class Items>
std::string array_of(const Items& items) {
  std::string out = "[";
  for (const auto& [key, text] : items) {
    if (out.size() > 1) out += ',';
    out += text;
  }
  return out + "]";
}

std::string event(std::string_view name, const std::string& data) {
  // data is one line: json_text() writes no newline (strings escape theirs).
  return "event: " + std::string(name) + "\ndata: " + data + "\n\n";
}

std::string uptime_field(double uptime) {
  std::string out = "\"uptime_seconds\":";
  atask::detail::append_json_number(out, uptime);
  return out;
}

/// The items of `now` that are new or differ from `before` (both ordered by
/// key), and the keys of `before` that `now` lacks.
template <class Key>
void diff(const std::vector<std::pair<Key, std::string>>& before,
          const std::vector<std::pair<Key, std::string>>& now,
          std::vector<std::pair<Key, std::string>>& changed, std::vector<Key>& gone) {
  std::map<Key, const std::string*> was;
  for (const auto& [k, v] : before) was.emplace(k, &v);
  for (const auto& item : now) {
    const auto it = was.find(item.first);
    if (it == was.end() || *it->second != item.second) changed.push_back(item);
    if (it != was.end()) was.erase(it);
  }
  for (const auto& [k, v] : was) gone.push_back(k);
}

}  // namespace

std::string snapshot_event(const DashboardState& s) {
  std::string d = "{" + uptime_field(s.uptime_seconds) + ",\"supervisor\":" + s.supervisor +
                  ",\"workers\":" + array_of(s.workers) + ",\"tasks\":" + s.tasks + ",\"jobs\":";
  d += s.has_jobs ? "{\"types\":" + s.job_types + ",\"jobs\":" + array_of(s.jobs) + "}" : std::string("null");
  return event("snapshot", d + "}");
}

std::optional<std::string> update_event(const DashboardState& before, const DashboardState& now) {
  std::string d;
  auto add = [&](std::string_view key, const std::string& value) {
    d += ",\"" + std::string(key) + "\":" + value;
  };
  if (now.supervisor_key != before.supervisor_key) add("supervisor", now.supervisor);
  std::vector<std::pair<std::string, std::string>> workers;
  std::vector<std::string> workers_gone;
  diff(before.workers, now.workers, workers, workers_gone);
  if (!workers.empty()) add("workers", array_of(workers));
  if (!workers_gone.empty()) {
    json::array names;
    for (const auto& n : workers_gone) names.push_back(json::value(n));
    add("workers_gone", json_text(names));
  }
  if (now.tasks != before.tasks) add("tasks", now.tasks);
  if (now.has_jobs != before.has_jobs || now.job_types != before.job_types)
    add("job_types", now.has_jobs ? now.job_types : std::string("null"));
  std::vector<std::pair<std::uint64_t, std::string>> jobs;
  std::vector<std::uint64_t> jobs_gone;
  diff(before.jobs, now.jobs, jobs, jobs_gone);
  if (!jobs.empty()) add("jobs", array_of(jobs));
  if (!jobs_gone.empty()) {
    json::array ids;
    for (auto id : jobs_gone) ids.push_back(json::value(id));
    add("jobs_gone", json_text(ids));
  }
  if (d.empty()) return std::nullopt;
  return event("update", "{" + uptime_field(now.uptime_seconds) + d + "}");
}

}  // namespace atask::http::detail
