// `atask inspect workers|queues|tasks|dead`, `atask requeue` and `atask
// purge`: what Redis knows of the cluster (Client's inspection calls), and
// the two operations on queues people ask for most.

#include "cli/commands.hpp"

#include <atask/cluster/view.hpp>
#include <atask/core/errors.hpp>
#include <atask/distributed/client.hpp>

#include <boost/json/object.hpp>

#include <unistd.h>

#include <iostream>
#include <sstream>

namespace atask::cli {

namespace json = boost::json;
namespace dist = atask::distributed;

namespace {

std::string label_of(const dist::Client::WorkerRecord& w, std::string_view key) {
  for (const auto& [k, v] : w.labels)
    if (k == key) return v;
  return {};
}

// ---- inspect ---------------------------------------------------------------------------------

struct InspectArgs {
  CommonOptions common;
  std::string broker;
  std::string what;
  std::string queue;
  std::size_t limit = 100;
};

int inspect_workers(dist::Client& client, const InspectArgs& a) {
  auto ws = client.workers();
  if (a.limit > 0 && ws.size() > a.limit) ws.resize(a.limit);
  if (a.common.json) {
    json::array out;
    for (const auto& w : ws) out.push_back(cluster::worker_json(w));  // as /api/cluster shows it
    print_json(out);
    return exit_code::ok;
  }
  Table t({"worker", "host", "pid", "queues", "running", "succeeded", "failed", "uptime", "heartbeat",
           "plugins"});
  for (const auto& w : ws)
    t.add({w.name, w.host, std::to_string(w.pid), join(w.queues, ","), std::to_string(w.running.size()),
           std::to_string(w.succeeded), std::to_string(w.failed),
           human_duration(w.heartbeat_ms + w.heartbeat_age_ms - w.started_ms),
           human_duration(w.heartbeat_age_ms) + " ago", label_of(w, "plugins")});
  t.print(std::cout);
  return exit_code::ok;
}

int inspect_queues(dist::Client& client, const InspectArgs& a) {
  std::vector<std::string> names = a.queue.empty() ? client.queues() : std::vector<std::string>{a.queue};
  if (a.limit > 0 && names.size() > a.limit) names.resize(a.limit);
  json::array out;
  Table t({"queue", "low", "normal", "high", "critical", "running", "delayed", "retrying", "dead", "oldest"});
  for (const auto& q : names) {
    const auto s = client.queue_stats(q);
    std::size_t waiting = 0;
    for (auto n : s.queued) waiting += n;
    if (a.common.json) {
      out.push_back(cluster::queue_json(s));
    } else {
      t.add({s.queue, std::to_string(s.queued[0]), std::to_string(s.queued[1]), std::to_string(s.queued[2]),
             std::to_string(s.queued[3]), std::to_string(s.running), std::to_string(s.delayed),
             std::to_string(s.retrying), std::to_string(s.dead),
             waiting == 0 ? "-" : human_duration(s.oldest_ms)});
    }
  }
  if (a.common.json)
    print_json(out);
  else
    t.print(std::cout);
  return exit_code::ok;
}

int inspect_tasks(dist::Client& client, const InspectArgs& a) {
  json::array out;
  Table t({"worker", "task", "name", "queue", "attempt", "running for"});
  std::size_t n = 0;
  for (const auto& w : client.workers()) {
    for (const auto& id : w.running) {
      if (a.limit > 0 && n >= a.limit) break;
      dist::RemoteInfo info;
      bool known = true;
      try {
        info = client.handle(id).info();
      } catch (const NotFoundError&) {
        known = false;  // ended and expired since the heartbeat
      }
      if (!a.queue.empty() && (!known || info.queue != a.queue)) continue;
      ++n;
      const std::int64_t age =
          info.started_ms > 0 ? w.heartbeat_ms + w.heartbeat_age_ms - info.started_ms : -1;
      if (a.common.json) {
        json::object o{{"worker", w.name}, {"id", id}};
        if (known) {
          o["name"] = info.name;
          o["queue"] = info.queue;
          o["priority"] = to_string(info.priority);
          o["status"] = to_string(info.status);
          o["attempt"] = info.attempt;
          o["started_ms"] = info.started_ms;
        }
        out.push_back(std::move(o));
      } else {
        t.add({w.name, id, known ? info.name : "?", known ? info.queue : "?",
               known ? std::to_string(info.attempt) : "?", known ? human_duration(age) : "?"});
      }
    }
  }
  if (a.common.json)
    print_json(out);
  else
    t.print(std::cout);
  return exit_code::ok;
}

int inspect_dead(dist::Client& client, const InspectArgs& a) {
  const std::vector<std::string> names =
      a.queue.empty() ? client.queues() : std::vector<std::string>{a.queue};
  json::array out;
  Table t({"queue", "entry", "task", "name", "attempt", "error", "message"});
  for (const auto& q : names) {
    for (const auto& d : client.dead_letters(q, a.limit > 0 ? a.limit : 1'000'000)) {
      if (a.common.json) {
        json::object o = cluster::dead_letter_json(d);
        o.emplace("queue", q);  // one list over every queue
        out.push_back(std::move(o));
      } else {
        t.add({q, d.entry, d.task_id, d.name, std::to_string(d.attempt), d.error_type, d.error_message});
      }
    }
  }
  if (a.common.json)
    print_json(out);
  else
    t.print(std::cout);
  return exit_code::ok;
}

int run_inspect(const InspectArgs& a) {
  dist::Client client({.broker = a.broker});
  if (a.what == "workers") return inspect_workers(client, a);
  if (a.what == "queues") return inspect_queues(client, a);
  if (a.what == "tasks") return inspect_tasks(client, a);
  return inspect_dead(client, a);
}

// ---- requeue -----------------------------------------------------------------------------------

struct RequeueArgs {
  CommonOptions common;
  std::string broker;
  std::string queue;
  std::vector<std::string> entries;
  bool all = false;
};

int run_requeue(const RequeueArgs& a) {
  if (a.all == !a.entries.empty())
    throw UsageError("give dead-letter ENTRY ids or --all, not both or neither");
  dist::Client client({.broker = a.broker});
  std::vector<std::string> entries = a.entries;
  if (a.all)
    for (const auto& d : client.dead_letters(a.queue, 1'000'000)) entries.push_back(d.entry);
  json::array done, failed;
  for (const auto& e : entries) {
    try {
      const std::string id = client.requeue(a.queue, e);
      if (a.common.json)
        done.push_back(json::object{{"entry", e}, {"id", id}});
      else
        std::cout << id << std::endl;
    } catch (const BrokerError& x) {
      failed.push_back(json::object{{"entry", e}, {"reason", x.what()}});
      std::cerr << "atask requeue: entry " << e << ": " << x.what() << "\n";
    }
  }
  if (a.common.json) print_json(json::object{{"queue", a.queue}, {"requeued", done}, {"failed", failed}});
  return failed.empty() ? exit_code::ok : exit_code::failed;
}

// ---- purge -------------------------------------------------------------------------------------

struct PurgeArgs {
  CommonOptions common;
  std::string broker;
  std::string queue;
  bool yes = false;
  bool dead = false;
};

int run_purge(const PurgeArgs& a) {
  dist::Client client({.broker = a.broker});
  const auto s = client.queue_stats(a.queue);
  std::size_t waiting = 0;
  for (auto n : s.queued) waiting += n;
  const std::size_t n = a.dead ? s.dead : waiting + s.delayed;
  const std::string what = a.dead ? "dead letters" : "waiting tasks";
  if (!a.yes) {
    std::cerr << "Purge " << n << " " << what;
    if (!a.dead && s.delayed > 0) std::cerr << " (" << waiting << " queued, " << s.delayed << " delayed)";
    std::cerr << " of queue '" << a.queue << "'? [y/N] " << std::flush;
    std::string answer;
    std::getline(std::cin, answer);
    if (!::isatty(0)) std::cerr << answer << "\n";  // a terminal echoed it, with its newline
    if (answer != "y" && answer != "Y" && answer != "yes") {
      std::cerr << "aborted" << std::endl;
      if (a.common.json) print_json(json::object{{"queue", a.queue}, {"purged", 0}, {"aborted", true}});
      return exit_code::failed;
    }
  }
  const std::size_t purged = a.dead ? client.purge_dead(a.queue) : client.purge(a.queue);
  if (a.common.json)
    print_json(json::object{{"queue", a.queue}, {"purged", purged}, {"dead", a.dead}, {"aborted", false}});
  else
    std::cout << "purged " << purged << " " << what << " of queue '" << a.queue << "'" << std::endl;
  return exit_code::ok;
}

}  // namespace

Command inspect_command(CLI::App& root) {
  auto a = std::make_shared<InspectArgs>();
  auto* app =
      root.add_subcommand("inspect", "Show the cluster's workers, queues, running tasks or dead letters");
  app->add_option("WHAT", a->what,
                  "workers: every registered worker; queues: depth per priority, running, delayed (retrying: "
                  "of those, waiting for a retry), dead; "
                  "tasks: the tasks workers run; dead: dead letters")
      ->required()
      ->check(CLI::IsMember({"workers", "queues", "tasks", "dead"}));
  add_broker_option(*app, a->broker);
  app->add_option("--queue", a->queue, "Only this queue (queues, tasks, dead)");
  app->add_option("--limit", a->limit, "At most this many rows (dead: per queue); 0: no limit")
      ->capture_default_str();
  add_json_option(*app, a->common);
  return {app, [a] { return run_inspect(*a); }};
}

Command requeue_command(CLI::App& root) {
  auto a = std::make_shared<RequeueArgs>();
  auto* app =
      root.add_subcommand("requeue", "Put dead letters back into their queue (same task id, attempt 0)");
  app->add_option("QUEUE", a->queue, "The queue whose dead letters to requeue")->required();
  app->add_option("ENTRY", a->entries, "Dead-letter entry ids (the ENTRY column of `atask inspect dead`)");
  app->add_flag("--all", a->all, "Every dead letter of the queue");
  add_broker_option(*app, a->broker);
  add_json_option(*app, a->common);
  app->footer("Prints the requeued task ids. Exit codes: 0 all requeued, 1 an entry could not be, 2 usage.");
  return {app, [a] { return run_requeue(*a); }};
}

Command purge_command(CLI::App& root) {
  auto a = std::make_shared<PurgeArgs>();
  auto* app = root.add_subcommand(
      "purge",
      "Cancel every task of a queue that no worker has taken yet (queued or delayed), or its dead letters");
  app->add_option("QUEUE", a->queue, "The queue")->required();
  app->add_flag("-y,--yes", a->yes, "Do not ask for confirmation");
  app->add_flag("--dead", a->dead, "Purge the queue's dead letters instead");
  add_broker_option(*app, a->broker);
  add_json_option(*app, a->common);
  app->footer(
      "Asks for confirmation on stdin unless --yes. Tasks running on workers are left alone. Exit codes: 0 "
      "purged, "
      "1 aborted (or Redis refused), 2 usage.");
  return {app, [a] { return run_purge(*a); }};
}

}  // namespace atask::cli
