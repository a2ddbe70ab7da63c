// The control plane's cluster routes: queues, dead letters, tasks sent to
// the cluster (ServerOptions::cluster).
#include "http/api.hpp"

#include <atask/core/errors.hpp>

namespace atask::http::detail {

namespace json = boost::json;

namespace {

// Runs a call of the cluster source on the pool, its exceptions made
// replies: NotFoundError 404, OptionsError 400, anything else 503 ("the
// cluster cannot be <failing>: ...").
OnPool on_pool(std::shared_ptr<ClusterSource> src, std::function<Reply(ClusterSource&)> f, bool read,
               const char* failing) {
  return OnPool{[src = std::move(src), f = std::move(f), failing]() -> Reply {
                  try {
                    return f(*src);
                  } catch (const NotFoundError& e) {
                    return error_reply(404, e.what());
                  } catch (const OptionsError& e) {
                    return error_reply(400, e.what());
                  } catch (const std::exception& e) {
                    return error_reply(
                        503, std::string("the cluster cannot be ") + failing + ": " + message_of(e));
                  }
                },
                read};
}

Reply raw_json(std::string body) {
  return Reply{.status = 200, .body = std::move(body)};
}

Outcome cluster_task_route(const std::shared_ptr<ClusterSource>& source, const Request& r,
                           const std::vector<std::string>& seg) {
  const bool get = r.method == "GET" || r.method == "HEAD", post = r.method == "POST";
  if (seg.size() == 3) {
    if (!post)
      return error_reply(405, "method " + std::string(r.method) + " is not allowed here (allowed: POST)",
                         "POST");
    return on_pool(
        source, [body = std::string(r.body)](ClusterSource& c) { return raw_json(c.send_task(body)); }, false,
        "reached");
  }
  if (seg.size() == 4) {
    if (!get)
      return error_reply(405, "method " + std::string(r.method) + " is not allowed here (allowed: GET, HEAD)",
                         "GET, HEAD");
    // A task's result and error are its data, as a job's result is: with a
    // token set, reading them needs it.
    if (!r.authorized)
      return error_reply(401, "this server needs 'Authorization: Bearer <token>' to read a task");
    return on_pool(
        source, [id = seg[3]](ClusterSource& c) { return raw_json(c.task(id)); }, true, "reached");
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

  if (seg.size() == 2) {
    if (!get) return method_not("GET, HEAD");
    return on_pool(
        opt_.cluster, [](ClusterSource& c) { return raw_json(c.snapshot()); }, true, "read");
  }
  if (seg[2] == "tasks") return cluster_task_route(opt_.cluster, r, seg);
  if (seg.size() < 5 || seg[2] != "queues" || seg[4] != "dead") return error_reply(404, "no such path");
  const std::string queue = seg[3];
  if (seg.size() == 5) {
    if (!get) return method_not("GET, HEAD");
    const auto limit = limit_param(query);
    if (!limit) return error_reply(400, "limit must be a number from 1 to 1000");
    return on_pool(
        opt_.cluster, [queue, n = *limit](ClusterSource& c) { return raw_json(c.dead_letters(queue, n)); },
        true, "read");
  }
  if (seg.size() == 6 && seg[5] == "purge") {
    if (!post) return method_not("POST");
    return on_pool(
        opt_.cluster,
        [queue](ClusterSource& c) {
          return json_reply(json::object{{"ok", true}, {"queue", queue}, {"purged", c.purge_dead(queue)}});
        },
        false, "read");
  }
  if (seg.size() == 7 && seg[6] == "requeue") {
    if (!post) return method_not("POST");
    return on_pool(
        opt_.cluster,
        [queue, entry = seg[5]](ClusterSource& c) {
          return json_reply(
              json::object{{"ok", true}, {"queue", queue}, {"task_id", c.requeue(queue, entry)}});
        },
        false, "read");
  }
  return error_reply(404, "no such path");
}

}  // namespace atask::http::detail
