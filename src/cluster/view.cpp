// The cluster as JSON and as Prometheus text, and the control plane's
// ClusterSource over a distributed::Client.

#include <atask/cluster/view.hpp>
#include <atask/core/errors.hpp>
#include <atask/util/enum_names.hpp>

#include "util/json_text.hpp"

#include <algorithm>
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
  return {{"queue", q.queue},
          {"waiting", std::move(waiting)},
          {"waiting_total", total},
          {"running", q.running},
          {"delayed", q.delayed},
          {"dead", q.dead},
          {"oldest_waiting_s", seconds(q.oldest_ms)}};
}

json::object dead_letter_json(const Client::DeadLetter& d) {
  json::array attempts;
  for (const auto& a : d.attempts)
    attempts.push_back({{"attempt", a.attempt},
                        {"error_type", a.error_type},
                        {"error_message", a.error_message},
                        {"worker", a.worker},
                        {"time_ms", a.time_ms}});
  return {{"entry", d.entry},
          {"task_id", d.task_id},
          {"name", d.name},
          {"args", d.args},
          {"attempt", d.attempt},
          {"worker", d.worker},
          {"error_type", d.error_type},
          {"error_message", d.error_message},
          {"attempts", std::move(attempts)}};
}

json::object snapshot(Client& client) {
  const auto ws = client.workers();
  json::array workers, queues;
  std::uint64_t succeeded = 0, failed = 0, retried = 0, redelivered = 0;
  for (const auto& w : ws) {
    workers.push_back(worker_json(w));
    succeeded += w.succeeded, failed += w.failed, retried += w.retried, redelivered += w.reaped;
  }
  std::size_t waiting = 0, running = 0, delayed = 0, dead = 0;
  for (const auto& q : client.queues()) {
    const auto s = client.queue_stats(q);
    for (auto n : s.queued) waiting += n;
    running += s.running, delayed += s.delayed, dead += s.dead;
    queues.push_back(queue_json(s));
  }
  json::object totals{{"workers", ws.size()}, {"waiting", waiting}, {"running", running},
                      {"delayed", delayed},   {"dead", dead},       {"succeeded", succeeded},
                      {"failed", failed},     {"retried", retried}, {"redelivered", redelivered}};
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
