// The control plane's routes (see api.hpp and docs/http.md): the
// dispatch and the supervisor's own routes here; workers and tasks in
// api_workers.cpp, jobs in api_jobs.cpp, the cluster in api_cluster.cpp,
// the JSON they answer with in api_views.cpp.
#include "http/api.hpp"

#include <atask/core/errors.hpp>

namespace atask::http::detail {

namespace json = boost::json;
using clock = std::chrono::steady_clock;

// -- routes -------------------------------------------------------------------------

Outcome Api::handle(const Request& r) const {
  try {
    std::string_view query;
    auto seg = split_path(r.target, query);
    if (!seg)
      return error_reply(400,
                         "malformed request target (expected an absolute path without empty, '.' or '..' "
                         "segments, valid %-escapes and no control characters)");
    if (r.method == "POST" && !r.authorized)
      return error_reply(401, "this server needs 'Authorization: Bearer <token>' for POST requests");
    return route(r, *seg, query);
  } catch (const std::exception& e) {
    return error_reply(500, "internal error: " + message_of(e));
  }
}

Outcome Api::route(const Request& r, const std::vector<std::string>& seg, std::string_view query) const {
  // HEAD is answered wherever GET is (the server sends the headers only).
  const bool get = r.method == "GET" || r.method == "HEAD", post = r.method == "POST";
  auto only = [&](bool ok, const char* allow) -> std::optional<Reply> {
    if (ok) return std::nullopt;
    return error_reply(
        405, "method " + std::string(r.method) + " is not allowed here (allowed: " + allow + ")", allow);
  };

  if (seg.empty()) {
    if (!opt_.dashboard) return error_reply(404, "the dashboard is off (ServerOptions::dashboard)");
    if (auto e = only(get, "GET, HEAD")) return *e;
    return Reply{.status = 200,
                 .body = std::string(dashboard_html, dashboard_html_size),
                 .content_type = "text/html; charset=utf-8"};
  }
  if (seg.size() == 1 && seg[0] == "metrics") {
    if (auto e = only(get, "GET, HEAD")) return *e;
    // Thousands of series with many workers: built on a pool thread (below),
    // and served again from the cache for metrics_cache.
    return OnPool{[sv = &sv_, cluster = opt_.cluster, stats = stats_, cache = metrics_cache_,
                   keep = opt_.metrics_cache, jobs = jobs_] {
      auto reply = [](std::string body) {
        return Reply{.status = 200,
                     .body = std::move(body),
                     .content_type = "text/plain; version=0.0.4; charset=utf-8"};
      };
      if (keep.count() > 0) {
        std::lock_guard lk(cache->m);
        if (cache->valid && clock::now() - cache->built < keep) return reply(cache->text);
      }
      const auto started = clock::now();
      std::string body = prometheus_text(*sv);
      if (cluster) {
        try {
          body += cluster->metrics();
        } catch (const std::exception&) {
          // Redis away: the supervisor's series still count; this one says so.
          body +=
              "# HELP atask_cluster_up Whether the cluster (Redis) could be read for this scrape.\n"
              "# TYPE atask_cluster_up gauge\natask_cluster_up 0\n";
        }
      }
      if (stats) body += server_metrics_text(stats());
      {
        std::lock_guard lk(jobs->m);  // ~Jobs clears p under it
        if (jobs->p) body += jobs_metrics_text(*jobs->p);
      }
      if (keep.count() > 0) {
        std::lock_guard lk(cache->m);
        // Two builds may overlap (two build slots): the later start wins.
        if (!cache->valid || started >= cache->built) {
          cache->text = body;
          cache->built = started;
          cache->valid = true;
        }
      }
      return reply(std::move(body));
    }};
  }
  if (seg[0] != "api" || seg.size() < 2) return error_reply(404, "no such path");

  const std::string& what = seg[1];
  if (what == "supervisor" && seg.size() == 2) {
    if (auto e = only(get, "GET, HEAD")) return *e;
    return json_reply(supervisor_json());
  }
  if (what == "workers" && seg.size() <= 3) {
    if (auto e = only(get, "GET, HEAD")) return *e;
    if (seg.size() == 3) return workers_get(sv_, seg[2]);
    return OnPool{[sv = &sv_] { return workers_get(*sv, {}); }};
  }
  if (what == "workers" && seg.size() == 4) {
    static constexpr std::string_view actions[] = {"start", "stop", "trigger", "put"};
    if (std::find(std::begin(actions), std::end(actions), seg[3]) == std::end(actions))
      return error_reply(404, "no such worker action '" + seg[3] + "' (start, stop, trigger, put)");
    if (auto e = only(post, "POST")) return *e;
    return worker_post(seg[2], seg[3], r.body);
  }
  if (what == "tasks" && seg.size() == 2) {
    if (auto e = only(get, "GET, HEAD")) return *e;
    return OnPool{[sv = &sv_, q = std::string(query)] { return tasks_get(*sv, q); }};
  }
  if (what == "tasks" && seg.size() == 3) {
    if (auto e = only(get, "GET, HEAD")) return *e;
    return OnPool{[sv = &sv_, id = seg[2]] { return task_get(*sv, id); }};
  }
  if (what == "cluster") return cluster_route(r, seg, query);
  if (what == "events" && seg.size() == 2) {
    if (auto e = only(get, "GET, HEAD")) return *e;
    // An EventSource cannot send headers: with a token set, this stream
    // (and only this one) also takes it as ?token= (docs/http.md).
    if (!r.authorized) {
      const auto given = query_param(query, "token");
      const auto decoded = given ? percent_decode(*given) : std::nullopt;
      if (!decoded || !token_equals(*decoded, opt_.token))
        return error_reply(401,
                           "this server needs its token for the event stream: ?token=<token> "
                           "(%-encoded) or 'Authorization: Bearer <token>'");
    }
    return EventStream{};
  }
  if (what == "jobs" &&
      (seg.size() <= 4 || (seg.size() == 5 && (seg[4] == "events" || seg[4] == "result")))) {
    // A result is the data itself, not a status: with a token set it needs
    // the token even to read (checked before the job, so that a client
    // without it learns nothing of which jobs exist).
    if (seg.size() == 5 && seg[4] == "result" && get && !r.authorized)
      return error_reply(401, "this server needs 'Authorization: Bearer <token>' to download job results");
    std::lock_guard lk(jobs_->m);
    if (!jobs_->configured) return error_reply(404, "this server has no jobs (ServerOptions::jobs)");
    if (!jobs_->p)
      return error_reply(503,
                         "the server's Jobs object is gone (it was destroyed while the server still ran)");
    if (seg.size() == 2) {
      if (auto e = only(get, "GET, HEAD")) return *e;
      return jobs_get(*jobs_->p, query);
    }
    if (seg.size() == 3) {
      if (auto e = only(post, "POST")) return *e;
      return jobs_post(*jobs_->p, seg[2], r);
    }
    if (auto e = only(get, "GET, HEAD")) return *e;
    return job_get(*jobs_->p, r, seg);
  }
  return error_reply(404, "no such path");
}

// POST /api/cluster/tasks (send a task), GET /api/cluster/tasks/<id> (follow it).
}  // namespace atask::http::detail
