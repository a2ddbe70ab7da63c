#pragma once
/// @file
/// The cluster as an API server shows it: every worker, every queue with its
/// counts, and totals, read from Redis through a distributed::Client. Give
/// view() to the control plane and it serves /api/cluster, the cluster's
/// metrics on /metrics and the dashboard's Cluster section:
///
/// @code
///   atask::distributed::Client client({.broker = "redis://127.0.0.1:6379"});
///   auto http = atask::http::serve(sv, {.port = 8080, .cluster = atask::cluster::view(client)});
/// @endcode

#include <atask/distributed/client.hpp>
#include <atask/http/server.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <memory>
#include <string>

namespace atask::cluster {

/// One worker, one queue and one dead letter as JSON: the objects of
/// /api/cluster and its dead-letter replies, and of `atask inspect --json`
/// (docs/http.md has their fields). One shape wherever they are shown.
boost::json::object worker_json(const distributed::Client::WorkerRecord& w);
boost::json::object queue_json(const distributed::Client::QueueStats& q);
boost::json::object dead_letter_json(const distributed::Client::DeadLetter& d);

/// The snapshot GET /api/cluster answers (docs/http.md has its fields).
/// @throws BrokerError when Redis cannot be read.
boost::json::object snapshot(distributed::Client& client);

/// The cluster's Prometheus series: atask_cluster_up, _workers,
/// _queue_waiting{queue,priority}, _queue_running, _queue_delayed,
/// _queue_dead{queue}, _queue_oldest_waiting_seconds{queue},
/// _worker_heartbeat_age_seconds{worker}, _worker_running{worker} and the
/// workers' counters summed: _tasks_total{outcome}, _redeliveries_total.
/// @throws BrokerError when Redis cannot be read.
std::string metrics_text(distributed::Client& client);

/// What a view shows besides what Redis says.
struct ViewOptions {
  /// The plugins this API server loaded, one JSON object each (`atask api`
  /// gives what `atask plugins --json` prints per plugin: name, version,
  /// description, tasks with their kind, description and parameters, job
  /// types, schedules): `plugins` in /api/cluster and the dashboard.
  boost::json::array plugins{};
};

/// A ClusterSource over `client`, which must outlive the server.
std::shared_ptr<http::ClusterSource> view(distributed::Client& client, ViewOptions options = {});

}  // namespace atask::cluster
