// The control plane's routes (see api.hpp and docs/http.md).
#include "http/api.hpp"
#include "supervisor/access.hpp"
#include "util/json_text.hpp"

#include <atask/core/errors.hpp>
#include <atask/workers/event.hpp>
#include <atask/workers/queue.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/json/parse.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace atask::http::detail {

namespace json = boost::json;
using clock = std::chrono::steady_clock;

namespace {

// Every JSON reply goes through here (and job events through job_event):
// numbers as people write them, not Boost.JSON's 1E-1 (util/json_text.hpp).
Reply json_reply(const json::value& v, int status = 200) {
  return Reply{.status = status, .body = atask::detail::json_text(v)};
}

char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

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

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// %-decodes one path segment; nullopt for a bad escape or a control byte.
std::optional<std::string> decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
    out.push_back(c);
  }
  return out;
}

/// The value of `key` in a query string (not decoded: our values are plain words).
std::optional<std::string_view> query_param(std::string_view q, std::string_view key) {
  while (!q.empty()) {
    const auto amp = q.find('&');
    std::string_view kv = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    const auto eq = kv.find('=');
    if (kv.substr(0, eq) == key) return eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1);
  }
  return std::nullopt;
}

// ?limit=N: 1..1000, 100 when absent; nullopt for anything else.
std::optional<std::size_t> limit_param(std::string_view query) {
  auto l = query_param(query, "limit");
  if (!l) return 100;
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(l->data(), l->data() + l->size(), n);
  if (ec != std::errc() || p != l->data() + l->size() || n == 0 || n > 1000) return std::nullopt;
  return n;
}

/// Parses a request body as JSON; an empty body is `empty`.
json::value parse_body(std::string_view body, json::value empty) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return empty;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec)
    throw ConversionError("the body is not valid JSON: " + ec.message());  // message(): no source location
  return v;
}

}  // namespace

std::string message_of(const std::exception& e) {
  if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e)) return se->code().message();
  return e.what();
}

StreamFormat stream_format(std::string_view accept) {
  bool ndjson = false;
  while (!accept.empty()) {
    const auto comma = accept.find(',');
    std::string_view range = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view{} : accept.substr(comma + 1);
    const auto semi = range.find(';');
    const std::string_view type = trim(range.substr(0, semi));
    // A media range with q=0 is one the client refuses.
    bool refused = false;
    for (std::string_view params = semi == std::string_view::npos ? std::string_view{} : range.substr(semi);
         !params.empty();) {
      params.remove_prefix(1);
      const auto next = params.find(';');
      const std::string_view p = trim(params.substr(0, next));
      params = next == std::string_view::npos ? std::string_view{} : params.substr(next);
      if (p.size() >= 2 && lower(p[0]) == 'q' && p[1] == '=') {
        const std::string_view q = p.substr(2);
        refused = q.find_first_not_of("0.") == std::string_view::npos;
      }
    }
    if (refused) continue;
    if (iequals(type, "text/event-stream")) return StreamFormat::sse;
    if (iequals(type, "application/x-ndjson")) ndjson = true;
  }
  return ndjson ? StreamFormat::ndjson : StreamFormat::json_array;
}

std::string event_id(const JobInfo& j) {
  return std::to_string(j.id) + "-" + std::to_string(j.version);
}

std::optional<std::uint64_t> resume_version(std::string_view last_event_id, std::uint64_t job_id) {
  const auto dash = last_event_id.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view s) -> std::optional<std::uint64_t> {
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return n;
  };
  const auto id = number(last_event_id.substr(0, dash));
  const auto version = number(last_event_id.substr(dash + 1));
  if (!id || !version || *id != job_id) return std::nullopt;
  return version;
}

Reply error_reply(int status, std::string_view message, std::string allow) {
  json::object o;
  o["error"] = message;
  o["status"] = status;
  Reply r = json_reply(o, status);
  r.allow = std::move(allow);
  return r;
}

bool is_loopback(std::string_view address) {
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(std::string(address), ec);
  return !ec && a.is_loopback();
}

bool bearer_matches(std::string_view header, std::string_view token) noexcept {
  // credentials = auth-scheme 1*SP token68 (RFC 7235 2.1); schemes are
  // case-insensitive. Only the token is secret: the scheme is compared
  // plainly, the token in constant time.
  constexpr std::string_view scheme = "bearer";
  if (header.size() <= scheme.size() || header[scheme.size()] != ' ' ||
      !iequals(header.substr(0, scheme.size()), scheme))
    return false;
  std::string_view given = header.substr(scheme.size());
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  return token_equals(given, token);
}

bool token_equals(std::string_view given, std::string_view token) noexcept {
  if (given.size() != token.size()) return false;
  unsigned diff = 0;
  for (std::size_t i = 0; i < token.size(); ++i) diff |= static_cast<unsigned>(given[i] ^ token[i]);
  return diff == 0;
}

std::optional<std::vector<std::string>> split_path(std::string_view target, std::string_view& query) {
  if (target.empty() || target.front() != '/') return std::nullopt;
  const auto q = target.find('?');
  std::string_view path = target.substr(0, q);
  query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  std::vector<std::string> seg;
  path.remove_prefix(1);
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);  // one trailing slash is fine
  if (path.empty()) return seg;
  for (;;) {
    const auto slash = path.find('/');
    auto part = decode(path.substr(0, slash));
    // "//", "." and ".." (also %-escaped) name nothing here: refuse them
    // rather than guess what a client meant.
    if (!part || part->empty() || *part == "." || *part == "..") return std::nullopt;
    seg.push_back(std::move(*part));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return seg;
}

// -- JSON views ---------------------------------------------------------------------

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
      const auto decoded = given ? decode(*given) : std::nullopt;
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
namespace {

Outcome cluster_task_route(const std::shared_ptr<ClusterSource>& source, const Request& r,
                           const std::vector<std::string>& seg) {
  const bool get = r.method == "GET" || r.method == "HEAD", post = r.method == "POST";
  auto on_pool = [src = source](std::function<std::string(ClusterSource&)> f, bool read) {
    return OnPool{[src, f = std::move(f)]() -> Reply {
                    try {
                      return Reply{.status = 200, .body = f(*src)};
                    } catch (const NotFoundError& e) {
                      return error_reply(404, e.what());
                    } catch (const OptionsError& e) {
                      return error_reply(400, e.what());
                    } catch (const std::exception& e) {
                      return error_reply(503, "the cluster cannot be reached: " + message_of(e));
                    }
                  },
                  read};
  };
  if (seg.size() == 3) {
    if (!post)
      return error_reply(405, "method " + std::string(r.method) + " is not allowed here (allowed: POST)",
                         "POST");
    return on_pool([body = std::string(r.body)](ClusterSource& c) { return c.send_task(body); }, false);
  }
  if (seg.size() == 4) {
    if (!get)
      return error_reply(405, "method " + std::string(r.method) + " is not allowed here (allowed: GET, HEAD)",
                         "GET, HEAD");
    // A task's result and error are its data, as a job's result is: with a
    // token set, reading them needs it.
    if (!r.authorized)
      return error_reply(401, "this server needs 'Authorization: Bearer <token>' to read a task");
    return on_pool([id = seg[3]](ClusterSource& c) { return c.task(id); }, true);
  }
  return error_reply(404, "no such path");
}

}  // namespace

// /api/cluster, /api/cluster/queues/<q>/dead, .../dead/purge, .../dead/<entry>/requeue
Outcome Api::cluster_route(const Request& r, const std::vector<std::string>& seg,
                           std::string_view query) const {
  if (!opt_.cluster) return error_reply(404, "this server shows no cluster (ServerOptions::cluster)");
  const bool get = r.method == "GET" || r.method == "HEAD", post = r.method == "POST";
  auto method_not = [&](const char* allow) {
    return error_reply(
        405, "method " + std::string(r.method) + " is not allowed here (allowed: " + allow + ")", allow);
  };
  // Runs a call of the source on the pool, its exceptions made replies.
  auto on_pool = [src = opt_.cluster](std::function<Reply(ClusterSource&)> f, bool read) {
    return OnPool{[src, f = std::move(f)]() -> Reply {
                    try {
                      return f(*src);
                    } catch (const NotFoundError& e) {
                      return error_reply(404, e.what());
                    } catch (const OptionsError& e) {
                      return error_reply(400, e.what());
                    } catch (const std::exception& e) {
                      return error_reply(503, "the cluster cannot be read: " + message_of(e));
                    }
                  },
                  read};
  };
  auto raw_json = [](std::string body) { return Reply{.status = 200, .body = std::move(body)}; };

  if (seg.size() == 2) {
    if (!get) return method_not("GET, HEAD");
    return on_pool([raw_json](ClusterSource& c) { return raw_json(c.snapshot()); }, true);
  }
  if (seg[2] == "tasks") return cluster_task_route(opt_.cluster, r, seg);
  if (seg.size() < 5 || seg[2] != "queues" || seg[4] != "dead") return error_reply(404, "no such path");
  const std::string queue = seg[3];
  if (seg.size() == 5) {
    if (!get) return method_not("GET, HEAD");
    const auto limit = limit_param(query);
    if (!limit) return error_reply(400, "limit must be a number from 1 to 1000");
    return on_pool(
        [raw_json, queue, n = *limit](ClusterSource& c) { return raw_json(c.dead_letters(queue, n)); }, true);
  }
  if (seg.size() == 6 && seg[5] == "purge") {
    if (!post) return method_not("POST");
    return on_pool(
        [queue](ClusterSource& c) {
          return json_reply(json::object{{"ok", true}, {"queue", queue}, {"purged", c.purge_dead(queue)}});
        },
        false);
  }
  if (seg.size() == 7 && seg[6] == "requeue") {
    if (!post) return method_not("POST");
    return on_pool(
        [queue, entry = seg[5]](ClusterSource& c) {
          return json_reply(
              json::object{{"ok", true}, {"queue", queue}, {"task_id", c.requeue(queue, entry)}});
        },
        false);
  }
  return error_reply(404, "no such path");
}

Reply Api::workers_get(Supervisor& sv, const std::string& name) {
  if (name.empty()) {
    json::array a;
    for (const auto& w : sv.workers()) a.push_back(worker_json(w));
    return json_reply(json::object{{"workers", std::move(a)}});
  }
  std::optional<WorkerInfo> info;
  if (!atask::detail::SupervisorAccess::worker_registry(sv)->with_worker(name,
                                                                         [&](Worker& w) { info = w.info(); }))
    return error_reply(404, "no worker named '" + name + "'");
  return json_reply(worker_json(*info));
}

Outcome Api::worker_post(const std::string& name, const std::string& action, std::string_view body) const {
  auto reg = atask::detail::SupervisorAccess::worker_registry(sv_);
  auto missing = [&] { return error_reply(404, "no worker named '" + name + "'"); };

  if (action == "start" || action == "stop") {
    // Start and stop call the worker's hooks (user code): not on the loop.
    bool exists = false;
    reg->with_worker(name, [&](Worker&) { exists = true; });
    if (!exists) return missing();
    return OnPool{[reg, name, action]() -> Reply {
                    Reply out = error_reply(404, "no worker named '" + name + "'");
                    reg->with_worker(name, [&](Worker& w) {
                      try {
                        json::object o{{"ok", true}};
                        if (action == "start")
                          o["started"] = w.start();
                        else
                          w.request_stop();
                        o["worker"] = worker_json(w.info());
                        out = json_reply(o);
                      } catch (const LifecycleError& e) {
                        out = error_reply(409, e.what());
                      } catch (const std::exception& e) {
                        out = error_reply(500, message_of(e));
                      }
                    });
                    return out;
                  },
                  false};
  }

  Reply out = missing();
  reg->with_worker(name, [&](Worker& w) {
    try {
      json::object o{{"ok", true}};
      if (action == "trigger") {
        if (w.kind() != WorkerKind::event && w.kind() != WorkerKind::interval)
          return void(out = error_reply(
                          409, "worker '" + name + "' is " + atask::detail::kind_with_article(w.kind()) +
                                   " worker: only event and interval workers can be triggered"));
        o["triggered"] = atask::trigger(w);
      } else {  // put
        if (!atask::accepts_json(w))
          return void(
              out = error_reply(409, w.kind() == WorkerKind::queue
                                         ? "the items of queue worker '" + name + "' do not convert from JSON"
                                         : "worker '" + name + "' is " +
                                               atask::detail::kind_with_article(w.kind()) +
                                               " worker, not a queue worker"));
        json::value item;
        try {
          item = parse_body(body, json::value(nullptr));
        } catch (const ConversionError& e) {
          return void(out = error_reply(400, e.what()));
        }
        if (!atask::try_put_json(w, item))
          return void(out = error_reply(503, "the queue of worker '" + name + "' is full"));
      }
      o["worker"] = worker_json(w.info());
      out = json_reply(o);
    } catch (const ConversionError& e) {
      out = error_reply(400, e.what());
    } catch (const LifecycleError& e) {
      out = error_reply(409, e.what());
    }
  });
  return out;
}

Reply Api::tasks_get(Supervisor& sv, std::string_view query) {
  std::optional<TaskStatus> only;
  if (auto s = query_param(query, "status")) {
    only = from_string<TaskStatus>(*s);
    if (!only)
      return error_reply(400, "unknown status '" + std::string(*s) +
                                  "' (delayed, queued, started, completed, failed, canceled)");
  }
  const auto limit_given = limit_param(query);
  if (!limit_given) return error_reply(400, "limit must be a number from 1 to 1000");
  return json_reply(json::object{{"tasks", tasks_json(sv, only, *limit_given)}});
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

Reply Api::task_get(Supervisor& sv, const std::string& digits) {
  std::uint64_t id = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || p != digits.data() + digits.size())
    return error_reply(400, "a task id is a number, not '" + digits + "'");
  for (const TaskInfo& t : sv.tasks())
    if (t.id == id) return json_reply(task_json(t, clock::now(), std::chrono::system_clock::now()));
  return error_reply(
      404, "no task " + digits + " (it may have left the history: SupervisorOptions::history_size)");
}

// GET /api/jobs: every job held; with ?status=, ?offset= or ?limit=, one
// page of them, newest first (docs/http.md).
Reply Api::jobs_get(Jobs& jobs_obj, std::string_view query) const {
  json::array types;
  for (auto& t : jobs_obj.types()) types.push_back(json::value(t));
  std::vector<JobInfo> list = jobs_obj.list();
  const auto status = query_param(query, "status"), offset_given = query_param(query, "offset");
  if (!status && !offset_given && !query_param(query, "limit")) {
    json::array jobs;
    for (const auto& j : list) jobs.push_back(job_json(j));
    return json_reply(json::object{{"types", std::move(types)}, {"jobs", std::move(jobs)}});
  }
  // A page. "finished" is done or failed: the jobs a history page lists.
  bool finished = false;
  std::optional<JobStatus> only;
  if (status) {
    finished = *status == "finished";
    if (!finished && !(only = from_string<JobStatus>(*status)))
      return error_reply(
          400, "unknown job status '" + std::string(*status) + "' (queued, running, done, failed, finished)");
  }
  std::size_t offset = 0;
  if (offset_given) {
    auto [p, ec] = std::from_chars(offset_given->data(), offset_given->data() + offset_given->size(), offset);
    if (offset_given->empty() || ec != std::errc() || p != offset_given->data() + offset_given->size())
      return error_reply(400, "offset must be a number from 0");
  }
  const auto limit = limit_param(query);
  if (!limit) return error_reply(400, "limit must be a number from 1 to 1000");
  std::erase_if(list, [&](const JobInfo& j) { return finished ? !j.finished() : only && j.status != *only; });
  std::sort(list.begin(), list.end(), [](const JobInfo& a, const JobInfo& b) { return a.id > b.id; });
  json::array jobs;
  for (std::size_t k = offset; k < list.size() && k - offset < *limit; ++k) jobs.push_back(job_json(list[k]));
  return json_reply(json::object{{"types", std::move(types)},
                                 {"jobs", std::move(jobs)},
                                 {"total", list.size()},
                                 {"offset", offset},
                                 {"limit", *limit}});
}

// GET /api/jobs/{type}/{id}: the job; .../events: its progress stream.
Outcome Api::job_get(Jobs& jobs, const Request& r, const std::vector<std::string>& seg) const {
  const std::string& type = seg[2];
  std::uint64_t id = 0;
  const std::string& digits = seg[3];
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  std::optional<Job> job;
  if (ec == std::errc() && p == digits.data() + digits.size()) job = jobs.find(id);
  std::optional<JobInfo> info;
  if (job) info = job->info();
  if (!info || info->type != type)
    return error_reply(404, "no job " + digits + " of type '" + type + "' (it may have left the history)");
  if (seg.size() == 4) return json_reply(job_json(*info));
  if (seg[4] == "result") return job_result(*info, r.method == "HEAD");
  const StreamFormat format = stream_format(r.accept);
  std::optional<std::uint64_t> seen;
  if (format == StreamFormat::sse) seen = resume_version(r.last_event_id, id);
  return StreamJob{std::move(*job), format, seen};
}

// GET /api/jobs/{type}/{id}/result: the job's own result file, never a path
// from the request. Read on the pool (a file of megabytes must not hold up
// the loop), whole into the reply, up to max_result_size.
Outcome Api::job_result(const JobInfo& j, bool head) const {
  const std::string which = "job " + std::to_string(j.id) + " of type '" + j.type + "'";
  if (j.status == JobStatus::failed)
    return error_reply(409, which + " failed, so it has no result (" + j.error + ")");
  if (j.status != JobStatus::done || j.result_path.empty())
    return error_reply(409,
                       which + " is " + std::string(to_string(j.status)) + ": its result is not ready yet");
  return OnPool{[path = j.result_path, which, head, cap = opt_.max_result_size,
                 disposition = "attachment; filename=\"" + result_name(j) + "\""]() -> Reply {
    namespace fs = std::filesystem;
    auto gone = [&] { return error_reply(404, "the result file of " + which + " is no longer in storage"); };
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return gone();
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec) return gone();
    auto too_big = [&](std::uintmax_t n) {
      return error_reply(500, "the result file of " + which + " is " + std::to_string(n) +
                                  " bytes, more than the " + std::to_string(cap) +
                                  " this server sends (ServerOptions::max_result_size: replies are built "
                                  "in memory); read it from the Jobs storage_dir");
    };
    if (size > cap) return too_big(size);
    Reply out{.status = 200,
              .body = {},
              .content_type = "application/octet-stream",
              .content_disposition = disposition};
    if (head) {
      out.head_length = size;
      return out;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return gone();
    // Read to the end rather than `size` bytes: the length sent is what was read.
    out.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) return error_reply(500, "the result file of " + which + " could not be read");
    if (out.body.size() > cap) return too_big(out.body.size());
    return out;
  }};
}

Outcome Api::jobs_post(Jobs& jobs, const std::string& type, const Request& r) const {
  if (!jobs.has_type(type)) return error_reply(404, "no job type named '" + type + "'");
  json::value params;
  try {
    params = parse_body(r.body, json::object{});
  } catch (const ConversionError& e) {
    return error_reply(400, e.what());
  }
  if (!params.is_object()) return error_reply(400, "the job parameters must be a JSON object");
  try {
    Job job = jobs.ensure_run(type, std::move(params.as_object()));
    const StreamFormat format = stream_format(r.accept);
    std::optional<std::uint64_t> seen;
    // A fetch()-based SSE client re-posts with Last-Event-ID; if the same
    // parameters now name another job (a failed one is run again), the id
    // does not match and it gets that job from its start.
    if (format == StreamFormat::sse) seen = resume_version(r.last_event_id, job.id());
    return StreamJob{std::move(job), format, seen};
  } catch (const NotFoundError& e) {
    return error_reply(404, e.what());
  } catch (const LifecycleError& e) {
    return error_reply(503, e.what());
  } catch (const OptionsError& e) {
    return error_reply(400, e.what());
  }
}

}  // namespace atask::http::detail
