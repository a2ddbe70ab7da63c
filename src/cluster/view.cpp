// The cluster as JSON and as Prometheus text, and the control plane's
// ClusterSource over a distributed::Client.

#include <atask/cluster/view.hpp>
#include <atask/core/errors.hpp>
#include <atask/util/enum_names.hpp>

#include "util/json_text.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>

namespace atask::cluster {

namespace json = boost::json;
using distributed::Client;

namespace {

double seconds(std::int64_t ms) {
  return static_cast<double>(ms) / 1000.0;
}

// A label value in the exposition format: \ " and newline escaped.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\', out += c;
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

struct Family {
  std::string& out;
  Family(std::string& o, std::string_view name, std::string_view type, std::string_view help) : out(o) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  }
  void sample(std::string_view name, std::string_view labels, double v) const {
    out += name;
    if (!labels.empty()) out += "{" + std::string(labels) + "}";
    out += ' ' + number(v) + '\n';
  }
};

json::array attempts_json(const std::vector<distributed::RemoteAttempt>& as) {
  json::array out;
  for (const auto& a : as)
    out.push_back({{"attempt", a.attempt},
                   {"error_type", a.error_type},
                   {"error_message", a.error_message},
                   {"worker", a.worker},
                   {"time_ms", a.time_ms}});
  return out;
}

// POST /api/cluster/tasks: the request object as SendOptions and a send.
// Every field is checked here, so that a typo is a 400 naming it rather
// than a task sent with a default.
std::string send_task_json(Client& client, const std::string& request) {
  constexpr std::string_view where = "POST /api/cluster/tasks";
  constexpr std::string_view known[] = {"name",      "args", "queue",          "priority",
                                        "countdown", "eta",  "idempotency_key"};
  boost::system::error_code ec;
  const json::value v = json::parse(request, ec);
  if (ec || !v.is_object())
    throw OptionsError(std::string(where) +
                       ": the body must be a JSON object such as {\"name\": \"demo.add\", \"args\": [2, 3]}");
  const json::object& o = v.as_object();
  for (const auto& kv : o)
    if (std::find(std::begin(known), std::end(known), kv.key()) == std::end(known))
      throw OptionsError(std::string(where) + ": unknown field '" + std::string(kv.key()) +
                         "' (known: name, args, queue, priority, countdown, eta, idempotency_key)");
  const auto text = [&](std::string_view field) -> std::optional<std::string> {
    const auto* f = o.if_contains(field);
    if (!f) return std::nullopt;
    if (!f->is_string() || f->as_string().empty())
      throw OptionsError(std::string(where) + ": '" + std::string(field) + "' must be a non-empty string");
    return std::string(f->as_string());
  };
  const auto seconds_field = [&](std::string_view field) -> std::optional<double> {
    const auto* f = o.if_contains(field);
    if (!f) return std::nullopt;
    if (!f->is_number() || !std::isfinite(f->to_number<double>()) || f->to_number<double>() < 0)
      throw OptionsError(std::string(where) + ": '" + std::string(field) +
                         "' must be a number of seconds >= 0");
    return f->to_number<double>();
  };
  const auto name = text("name");
  if (!name) throw OptionsError(std::string(where) + ": 'name' (the task's name) is required");
  json::array args;
  if (const auto* a = o.if_contains("args")) {
    if (!a->is_array())
      throw OptionsError(std::string(where) + ": 'args' must be a JSON array (one value per parameter)");
    args = a->as_array();
  }
  distributed::SendOptions so;
  so.queue = text("queue");
  if (const auto p = text("priority")) {
    so.priority = from_string<Priority>(*p);
    if (!so.priority)
      throw OptionsError(std::string(where) + ": priority '" + *p +
                         "' is not one of low, normal, high, critical");
  }
  if (const auto c = seconds_field("countdown"))
    so.countdown = std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(*c * 1000)));
  if (const auto e = seconds_field("eta"))
    so.eta = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(*e)));
  so.idempotency_key = text("idempotency_key");
  auto h = client.send(*name, std::move(args), so);
  return atask::detail::json_text(json::object{{"id", h.id()}});
}

bool ended(distributed::RemoteStatus s) {
  using enum distributed::RemoteStatus;
  return s == succeeded || s == failed || s == canceled || s == dead;
}

// GET /api/cluster/tasks/<id>: the task hash as RemoteHandle reads it.
std::string task_json(Client& client, const std::string& id) {
  if (id.empty() || id.size() > 256)
    throw OptionsError("GET /api/cluster/tasks/<id>: the id must have 1 to 256 characters");
  // A handle attached by id reads the outcome once, now; info() then reads
  // the rest. A task that ended in between is attached again for its result.
  auto h = client.handle(id);
  distributed::RemoteInfo i;
  std::vector<distributed::RemoteAttempt> attempts;
  try {
    i = h.info();
    attempts = h.attempts();
  } catch (const NotFoundError&) {
    throw NotFoundError("Redis knows no task " + id + " (never sent, or its result expired)");
  }
  if (ended(i.status) && !h.done()) h = client.handle(id);
  json::object out{{"id", i.id},
                   {"name", i.name},
                   {"queue", i.queue},
                   {"priority", to_string(i.priority)},
                   {"status", to_string(i.status)},
                   {"attempt", i.attempt},
                   {"worker", i.worker},
                   {"created_ms", i.created_ms},
                   {"started_ms", i.started_ms},
                   {"finished_ms", i.finished_ms},
                   {"due_ms", i.due_ms},
                   {"error_type", i.error_type},
                   {"error_message", i.error_message},
                   {"attempts", attempts_json(attempts)}};
  if (i.status == distributed::RemoteStatus::succeeded && h.done()) {
    try {
      out["result"] = h.get();
    } catch (const std::exception&) {
      // Requeued or expired between the two reads: no result to show.
    }
  }
  return atask::detail::json_text(out);
}

class View final : public http::ClusterSource {
 public:
  View(Client& c, ViewOptions o) : client_(c), options_(std::move(o)) {}
  std::string snapshot() override {
    json::object s = cluster::snapshot(client_);
    s["plugins"] = options_.plugins;
    return atask::detail::json_text(s);
  }
  std::string metrics() override { return metrics_text(client_); }
  std::string dead_letters(const std::string& queue, std::size_t limit) override {
    json::array out;
    for (const auto& d : client_.dead_letters(queue, limit)) out.push_back(dead_letter_json(d));
    return atask::detail::json_text(json::object{{"queue", queue}, {"dead", std::move(out)}});
  }
  std::string requeue(const std::string& queue, const std::string& entry) override {
    try {
      return client_.requeue(queue, entry);
    } catch (const BrokerError& e) {
      // "ERR atask: no dead letter <entry>": the caller named something gone.
      if (std::string_view(e.what()).find("no dead letter") != std::string_view::npos)
        throw NotFoundError("queue '" + queue + "' has no dead letter " + entry);
      throw;
    }
  }
  std::size_t purge_dead(const std::string& queue) override { return client_.purge_dead(queue); }
  std::string send_task(const std::string& request) override { return send_task_json(client_, request); }
  std::string task(const std::string& id) override { return task_json(client_, id); }

 private:
  Client& client_;
  const ViewOptions options_;
};

}  // namespace

json::object worker_json(const Client::WorkerRecord& w) {
  json::object labels;
  for (const auto& [k, v] : w.labels) labels[k] = v;
  json::array queues, running;
  for (const auto& q : w.queues) queues.emplace_back(q);
  for (const auto& id : w.running) running.emplace_back(id);
  return {
      {"name", w.name},
      {"host", w.host},
      {"pid", w.pid},
      {"queues", std::move(queues)},
      {"prefetch", w.prefetch},
      {"started_ms", w.started_ms},
      {"uptime_s", seconds(std::max<std::int64_t>(0, w.heartbeat_ms + w.heartbeat_age_ms - w.started_ms))},
      {"heartbeat_age_s", seconds(w.heartbeat_age_ms)},
      {"running", std::move(running)},
      {"succeeded", w.succeeded},
      {"failed", w.failed},
      {"retried", w.retried},
      {"redelivered", w.reaped},
      {"labels", std::move(labels)}};
}

json::object queue_json(const Client::QueueStats& q) {
  json::object waiting;
  std::size_t total = 0;
  for (std::size_t i = 0; i < priority_count; ++i) {
    waiting[std::string(to_string(all_priorities[i]))] = q.queued[i];
    total += q.queued[i];
  }
  return {{"queue", q.queue},       {"waiting", std::move(waiting)},
          {"waiting_total", total}, {"running", q.running},
          {"delayed", q.delayed},   {"retrying", q.retrying},
          {"dead", q.dead},         {"oldest_waiting_s", seconds(q.oldest_ms)}};
}

json::object dead_letter_json(const Client::DeadLetter& d) {
  return {{"entry", d.entry},
          {"task_id", d.task_id},
          {"name", d.name},
          {"args", d.args},
          {"attempt", d.attempt},
          {"worker", d.worker},
          {"error_type", d.error_type},
          {"error_message", d.error_message},
          {"attempts", attempts_json(d.attempts)}};
}

json::object snapshot(Client& client) {
  const auto ws = client.workers();
  json::array workers, queues;
  std::uint64_t succeeded = 0, failed = 0, retried = 0, redelivered = 0;
  for (const auto& w : ws) {
    workers.push_back(worker_json(w));
    succeeded += w.succeeded, failed += w.failed, retried += w.retried, redelivered += w.reaped;
  }
  std::size_t waiting = 0, running = 0, delayed = 0, retrying = 0, dead = 0;
  for (const auto& q : client.queues()) {
    const auto s = client.queue_stats(q);
    for (auto n : s.queued) waiting += n;
    running += s.running, delayed += s.delayed, retrying += s.retrying, dead += s.dead;
    queues.push_back(queue_json(s));
  }
  json::object totals{{"workers", ws.size()},      {"waiting", waiting},   {"running", running},
                      {"delayed", delayed},        {"retrying", retrying}, {"dead", dead},
                      {"succeeded", succeeded},    {"failed", failed},     {"retried", retried},
                      {"redelivered", redelivered}};
  return {{"broker", client.broker()},
          {"workers", std::move(workers)},
          {"queues", std::move(queues)},
          {"totals", std::move(totals)}};
}

std::string metrics_text(Client& client) {
  const auto ws = client.workers();
  std::vector<Client::QueueStats> qs;
  for (const auto& q : client.queues()) qs.push_back(client.queue_stats(q));

  std::string out;
  Family(out, "atask_cluster_up", "gauge", "Whether the cluster (Redis) could be read for this scrape.")
      .sample("atask_cluster_up", "", 1);
  Family(out, "atask_cluster_workers", "gauge", "Workers registered in the cluster.")
      .sample("atask_cluster_workers", "", static_cast<double>(ws.size()));
  {
    Family f(out, "atask_cluster_queue_waiting", "gauge", "Tasks waiting in a queue, per priority.");
    for (const auto& q : qs)
      for (std::size_t i = 0; i < priority_count; ++i)
        f.sample(
            "atask_cluster_queue_waiting",
            "queue=\"" + label(q.queue) + "\",priority=\"" + std::string(to_string(all_priorities[i])) + "\"",
            static_cast<double>(q.queued[i]));
  }
  const auto per_queue = [&](const char* name, const char* help, auto get) {
    Family f(out, name, "gauge", help);
    for (const auto& q : qs) f.sample(name, "queue=\"" + label(q.queue) + "\"", get(q));
  };
  per_queue("atask_cluster_queue_running", "Tasks of a queue delivered to a worker and not yet finished.",
            [](const auto& q) { return static_cast<double>(q.running); });
  per_queue("atask_cluster_queue_delayed", "Tasks of a queue waiting for their time (countdown, eta, retry).",
            [](const auto& q) { return static_cast<double>(q.delayed); });
  per_queue("atask_cluster_queue_retrying",
            "Tasks of a queue waiting for a retry after a failed run (counted in _delayed too).",
            [](const auto& q) { return static_cast<double>(q.retrying); });
  per_queue("atask_cluster_queue_dead", "Dead letters of a queue.",
            [](const auto& q) { return static_cast<double>(q.dead); });
  per_queue("atask_cluster_queue_oldest_waiting_seconds",
            "Age of the oldest task waiting in a queue (0: none).",
            [](const auto& q) { return seconds(q.oldest_ms); });

  const auto per_worker = [&](const char* name, const char* type, const char* help, auto get) {
    Family f(out, name, type, help);
    for (const auto& w : ws) f.sample(name, "worker=\"" + label(w.name) + "\"", get(w));
  };
  per_worker("atask_cluster_worker_heartbeat_age_seconds", "gauge", "Time since a worker's last heartbeat.",
             [](const auto& w) { return seconds(w.heartbeat_age_ms); });
  per_worker("atask_cluster_worker_running", "gauge", "Tasks a worker runs now.",
             [](const auto& w) { return static_cast<double>(w.running.size()); });
  {
    Family f(out, "atask_cluster_worker_tasks_total", "counter", "Tasks a worker finished, by outcome.");
    for (const auto& w : ws) {
      f.sample("atask_cluster_worker_tasks_total", "worker=\"" + label(w.name) + "\",outcome=\"succeeded\"",
               static_cast<double>(w.succeeded));
      f.sample("atask_cluster_worker_tasks_total", "worker=\"" + label(w.name) + "\",outcome=\"failed\"",
               static_cast<double>(w.failed));
    }
  }
  per_worker("atask_cluster_worker_retries_total", "counter",
             "Failed runs a worker put back for another attempt.",
             [](const auto& w) { return static_cast<double>(w.retried); });
  per_worker("atask_cluster_worker_redeliveries_total", "counter",
             "Tasks of dead workers that a worker's sweeps handed back to their queues.",
             [](const auto& w) { return static_cast<double>(w.reaped); });
  return out;
}

std::shared_ptr<http::ClusterSource> view(Client& client, ViewOptions options) {
  return std::make_shared<View>(client, std::move(options));
}

}  // namespace atask::cluster
