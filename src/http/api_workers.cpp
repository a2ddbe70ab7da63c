// The control plane's worker and task routes.
#include "http/api.hpp"
#include "supervisor/access.hpp"

#include <atask/core/errors.hpp>
#include <atask/workers/event.hpp>
#include <atask/workers/queue.hpp>

#include <charconv>

namespace atask::http::detail {

namespace json = boost::json;
using clock = std::chrono::steady_clock;

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
}  // namespace atask::http::detail
