// `atask worker`: a Supervisor with a Consumer for the plugins' tasks,
// optionally the HTTP control plane (offering the plugins' job types) and
// an embedded beat. Runs until SIGTERM/SIGINT; the exit code says how the
// staged stop ended.

#include "cli/commands.hpp"

#include <atask/distributed/beat.hpp>
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/distributed/remote_jobs.hpp>
#include <atask/http/server.hpp>
#include <atask/jobs/jobs.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <spdlog/spdlog.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>

namespace atask::cli {

namespace json = boost::json;
namespace dist = atask::distributed;

namespace {

struct WorkerArgs {
  CommonOptions common;
  std::string broker;
  std::vector<std::string> queues{"default"};
  int concurrency = SupervisorOptions::default_pool_size();
  int processes = 0;
  std::size_t prefetch = 0;
  std::vector<std::string> plugin_dirs;
  bool strict = false;
  std::size_t max_tasks_per_child = 0;
  double time_limit = 0, soft_time_limit = 0;
  std::string hostname;
  std::string loglevel = "info";
  std::string http;
  std::string http_token;
  std::string jobs_dir;
  bool beat = false;
  double warm_timeout = 30, soft_timeout = 10;
};

// 4: a task was abandoned (cold stage); 3: tasks were canceled before they
// started or asked to stop (soft stage); 0: every task finished.
int exit_code_of(const StopReport& r) {
  if (!r.abandoned.empty()) return exit_code::abandoned;
  if (r.canceled > 0 || r.stop_requested > 0) return exit_code::stopped;
  return exit_code::ok;
}

int run_worker(const WorkerArgs& a) {
  std::optional<std::pair<std::string, unsigned short>> http_at;
  if (!a.http.empty()) http_at = parse_http(a.http);
  auto log = make_logger(a.loglevel);

  // Plugins first: the supervisor's constructor forks the process pool's
  // fork server, and its children must have the plugins' code mapped.
  TaskRegistry tasks;
  PluginSet plugins = load_plugins(a.plugin_dirs, tasks);
  if (!accept_plugins(plugins, a.strict, *log, "worker")) return exit_code::failed;
  if (tasks.names().empty())
    log->warn("worker: no task is registered (no plugin loaded): every task it takes goes dead");

  SupervisorOptions so{.id = "atask-worker",
                       .pool_size = a.concurrency,
                       .handle_signals = true,
                       .signal_stop = {.cancel_queued = false,
                                       .warm_timeout = seconds_to_ms(a.warm_timeout),
                                       .soft_timeout = seconds_to_ms(a.soft_timeout)},
                       .logger = log};
  so.processes.pool_size = a.processes;
  so.processes.max_tasks_per_child = a.max_tasks_per_child;
  so.processes.time_limit = seconds_to_ms(a.time_limit);
  so.processes.soft_time_limit = seconds_to_ms(a.soft_time_limit);
  Supervisor sv(so);

  dist::ConsumerOptions co{.broker = a.broker,
                           .queues = a.queues,
                           .prefetch = a.prefetch,
                           .name = a.hostname,
                           .time_limit = seconds_to_ms(a.time_limit),
                           .labels = {{"plugins", join(plugins.labels(), " ")}, {"version", ATASK_VERSION}}};
  // The consumer lets running tasks finish for as long as the warm stage
  // lasts; then the supervisor's soft stage asks them to stop.
  co.stop_timeout = seconds_to_ms(a.warm_timeout);
  dist::Consumer consumer(sv, tasks, co);

  // The control plane: this worker's supervisor, and the plugins' job types
  // (each job sends its task to the cluster and follows it).
  std::unique_ptr<dist::Client> client;
  std::unique_ptr<Jobs> jobs;
  std::optional<http::Server> server;
  if (http_at) {
    client = std::make_unique<dist::Client>(dist::ClientOptions{.broker = a.broker, .registry = &tasks});
    std::filesystem::path dir = a.jobs_dir;
    if (dir.empty()) {
      std::string n = consumer.name();
      for (auto& c : n)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '-';
      dir = std::filesystem::temp_directory_path() / ("atask-jobs-" + n);
    }
    jobs = std::make_unique<Jobs>(sv, JobsOptions{.storage_dir = dir});
    for (const auto& p : plugins.load.loaded)
      for (const auto& jt : p.manifest.job_types)
        dist::add_remote_job_type(*jobs, *client, jt.type, jt.task, {.args = job_arguments(jt.arguments)});
    server = http::serve(
        sv, {.address = http_at->first, .port = http_at->second, .token = a.http_token, .jobs = jobs.get()});
  }

  std::unique_ptr<dist::Beat> beat;
  const auto schedules = plugins.schedules();
  if (a.beat) {
    if (schedules.empty())
      log->warn("worker: --beat, but no plugin has a schedule: no beat runs");
    else
      beat = std::make_unique<dist::Beat>(sv, schedules,
                                          dist::BeatOptions{.broker = a.broker, .name = consumer.name()});
  }

  try {
    sv.start();
  } catch (const std::exception& e) {
    std::cerr << "atask worker: could not start: " << e.what() << "\n";
    return exit_code::failed;
  }

  // Redis down at start is not fatal: the consumer keeps trying (with
  // back-off) and starts taking tasks once it gets through. Say so once,
  // since it logs nothing until its first connection.
  boost::asio::steady_timer connect_check(sv.io_context(), co.connect_timeout);
  connect_check.async_wait(
      [&consumer, &log, broker = display_broker(a.broker)](boost::system::error_code ec) {
        if (!ec && !consumer.info().connected)
          log->warn("worker: not connected to Redis at {} yet; it keeps trying", broker);
      });

  const std::string http_url = server ? server->url() : "";
  if (a.common.json) {
    json::array loaded, failed;
    for (const auto& p : plugins.load.loaded)
      loaded.push_back(
          {{"name", p.manifest.name}, {"version", p.manifest.version}, {"path", p.path.string()}});
    for (const auto& f : plugins.load.failed) failed.push_back(failure_json(f));
    json::array qs(a.queues.begin(), a.queues.end());
    json::array names;
    for (const auto& n : tasks.names()) names.push_back(json::value(n));
    print_json(json::object{{"event", "started"},
                            {"worker", consumer.name()},
                            {"broker", display_broker(a.broker)},
                            {"queues", qs},
                            {"concurrency", a.concurrency},
                            {"processes", a.processes},
                            {"plugins", loaded},
                            {"failed", failed},
                            {"tasks", names},
                            {"http", http_url.empty() ? json::value(nullptr) : json::value(http_url)},
                            {"beat", beat ? schedules.size() : 0}});
  } else {
    std::cout << "atask worker " << consumer.name() << ": broker " << display_broker(a.broker) << ", queues "
              << join(a.queues, ",") << ", concurrency " << a.concurrency << ", processes " << a.processes
              << ", plugins " << (plugins.load.loaded.empty() ? "none" : join(plugins.labels(), " "));
    if (!plugins.load.ok()) std::cout << " (" << plugins.load.failed.size() << " failed)";
    if (server) std::cout << ", http " << http_url;
    if (beat) std::cout << ", beat " << schedules.size() << " schedule(s)";
    std::cout << std::endl;
  }

  const StopReport r = sv.block();
  const auto info = consumer.info();
  const int code = exit_code_of(r);
  if (a.common.json) {
    print_json(json::object{{"event", "stopped"},
                            {"worker", consumer.name()},
                            {"stage", to_string(r.stage)},
                            {"canceled", r.canceled},
                            {"stop_requested", r.stop_requested},
                            {"abandoned", r.abandoned.size()},
                            {"succeeded", info.succeeded},
                            {"failed", info.failed},
                            {"exit_code", code}});
  } else {
    std::cout << "atask worker " << consumer.name() << ": stopped at the " << to_string(r.stage) << " stage ("
              << info.succeeded << " succeeded, " << info.failed << " failed; " << r.canceled << " canceled, "
              << r.stop_requested << " asked to stop, " << r.abandoned.size() << " abandoned)" << std::endl;
  }
  if (!r.abandoned.empty()) {
    // Threads are still running abandoned tasks (in plugin code). Tearing
    // down the supervisor, the consumer and the plugins' statics under them
    // would free what they touch when they end (ThreadSanitizer showed it):
    // the process ends here, as a cold stop means to.
    std::cout.flush();
    std::cerr.flush();
    log->flush();
    std::_Exit(code);
  }
  return code;
}

}  // namespace

Command worker_command(CLI::App& root) {
  auto a = std::make_shared<WorkerArgs>();
  auto* app =
      root.add_subcommand("worker", "Run a worker: take tasks from Redis queues and run the plugins' tasks");
  add_broker_option(*app, a->broker);
  app->add_option("-Q,--queues", a->queues,
                  "Queues to consume, comma separated. A higher priority is always taken first; within one "
                  "priority the queues are read in this order (the first is preferred)")
      ->delimiter(',')
      ->capture_default_str();
  app->add_option("-c,--concurrency", a->concurrency, "Pool threads that run thread tasks")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--processes", a->processes, "Child processes of the process pool (process tasks; 0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--prefetch", a->prefetch, "Tasks taken and not yet finished, at most (0: 4 x concurrency)")
      ->capture_default_str();
  app->add_option(
         "--plugin-dir", a->plugin_dirs,
         "A folder of plugins (*.so) to load; repeatable. Folders of ATASK_PLUGIN_FOLDERS load first")
      ->allow_extra_args(false);
  app->add_flag("--strict", a->strict, "Refuse to start (exit 1) when a plugin fails to load");
  app->add_option("--max-tasks-per-child", a->max_tasks_per_child,
                  "A process-pool child is replaced after this many tasks (0: never)")
      ->capture_default_str();
  app->add_option(
         "--time-limit", a->time_limit,
         "Seconds a task may run when its send and registration give no limit; a process task's child "
         "is killed at this limit (0: none)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--soft-time-limit", a->soft_time_limit,
                  "Seconds after which a process task is asked to stop (0: none); below --time-limit")
      ->check(CLI::NonNegativeNumber);
  app->add_option("-n,--hostname", a->hostname,
                  "This worker's name in the cluster (unique); default <host>:<pid>:<random>");
  app->add_option("-l,--loglevel", a->loglevel, "Log level on stderr")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app->add_option(
      "--http", a->http,
      "Serve the HTTP control plane (API, dashboard, metrics, the plugins' job types) on ADDR:PORT");
  app->add_option("--http-token", a->http_token,
                  "Bearer token for POST requests (required for an address other than loopback)")
      ->envname("ATASK_HTTP_TOKEN");
  app->add_option("--jobs-dir", a->jobs_dir,
                  "Where --http keeps job results (default: <tmp>/atask-jobs-<worker name>)");
  app->add_flag("--beat", a->beat, "Also run the beat with the plugins' schedules");
  app->add_option("--warm-timeout", a->warm_timeout,
                  "Seconds a stop lets running tasks finish before it asks them to stop")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--soft-timeout", a->soft_timeout,
                  "Seconds tasks asked to stop have before they are abandoned")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_json_option(*app, a->common);
  app->footer(
      "SIGTERM or SIGINT stops in stages: warm (no new tasks, running ones finish), soft (running tasks "
      "asked to "
      "stop), cold (abandoned). Each further signal moves to the next stage at once.\n"
      "Exit codes: 0 every task finished, 1 could not start, 2 usage, 3 tasks canceled or asked to stop, "
      "4 tasks abandoned.");
  return {app, [a] { return run_worker(*a); }};
}

}  // namespace atask::cli
