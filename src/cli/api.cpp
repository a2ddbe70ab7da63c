// `atask api`: the API server apart from the workers. It runs no task: the
// HTTP control plane shows the whole cluster (cluster::view over a Client),
// and the plugins' job types send their task to the cluster and stream its
// progress. Runs until SIGTERM/SIGINT.

#include "cli/commands.hpp"

#include <atask/cluster/view.hpp>
#include <atask/distributed/client.hpp>
#include <atask/distributed/remote_jobs.hpp>
#include <atask/http/server.hpp>
#include <atask/jobs/jobs.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <boost/json/object.hpp>

#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>
#include <unistd.h>

namespace atask::cli {

namespace json = boost::json;
namespace dist = atask::distributed;

namespace {

struct ApiArgs {
  CommonOptions common;
  std::string broker;
  std::string http = "127.0.0.1:8080";
  std::string http_token;
  std::vector<std::string> plugin_dirs;
  bool strict = false;
  std::string jobs_dir;
  std::string loglevel = "info";
  int threads = 4;
};

int run_api(const ApiArgs& a) {
  const auto [address, port] = parse_http(a.http);
  auto log = make_logger(a.loglevel);

  // The plugins give the job types (and their tasks' names); no task of
  // theirs runs here.
  TaskRegistry tasks;
  PluginSet plugins = load_plugins(a.plugin_dirs, tasks);
  if (!accept_plugins(plugins, a.strict, *log, "api")) return exit_code::failed;

  Supervisor sv({.id = "atask-api",
                 .pool_size = a.threads,
                 .handle_signals = true,
                 .signal_stop = {.cancel_queued = false},
                 .logger = log});
  // With the plugins' registry: a task sent over HTTP gets its queue and
  // priority defaults, as `atask send` with the plugins would.
  dist::Client client({.broker = a.broker, .registry = &tasks});
  std::filesystem::path dir = a.jobs_dir;
  if (dir.empty())
    dir = std::filesystem::temp_directory_path() / ("atask-api-jobs-" + std::to_string(::getpid()));
  Jobs jobs(sv, {.storage_dir = dir});
  json::array catalog;  // what /api/cluster and the dashboard show of the plugins
  for (const auto& p : plugins.load.loaded) catalog.push_back(plugin_json(p, tasks));
  std::size_t job_types = 0;
  for (const auto& p : plugins.load.loaded)
    for (const auto& jt : p.manifest.job_types) {
      dist::add_remote_job_type(jobs, client, jt.type, jt.task, {.args = job_arguments(jt.arguments)});
      ++job_types;
    }
  auto server = http::serve(sv, {.address = address,
                                 .port = port,
                                 .token = a.http_token,
                                 .jobs = &jobs,
                                 .cluster = cluster::view(client, {.plugins = catalog})});
  try {
    sv.start();
  } catch (const std::exception& e) {
    std::cerr << "atask api: could not start: " << e.what() << "\n";
    return exit_code::failed;
  }
  const std::string url = server.url();
  if (a.common.json) {
    json::array loaded;
    for (const auto& p : plugins.load.loaded)
      loaded.push_back(
          {{"name", p.manifest.name}, {"version", p.manifest.version}, {"path", p.path.string()}});
    print_json(json::object{{"event", "started"},
                            {"http", url},
                            {"broker", display_broker(a.broker)},
                            {"plugins", std::move(loaded)},
                            {"job_types", job_types}});
  } else {
    std::cout << "atask api: " << url << "/ (dashboard of the cluster at " << display_broker(a.broker)
              << "), plugins " << (plugins.load.loaded.empty() ? "none" : join(plugins.labels(), " ")) << ", "
              << job_types << " job type(s)" << std::endl;
  }
  const StopReport r = sv.block();
  if (a.common.json)
    print_json(json::object{{"event", "stopped"}, {"stage", to_string(r.stage)}});
  else
    std::cout << "atask api: stopped at the " << to_string(r.stage) << " stage" << std::endl;
  return r.abandoned.empty() ? exit_code::ok : exit_code::abandoned;
}

}  // namespace

Command api_command(CLI::App& root) {
  auto a = std::make_shared<ApiArgs>();
  auto* app = root.add_subcommand("api",
                                  "Run the API server: the HTTP API and dashboard of the whole cluster, from "
                                  "a process that runs no task");
  add_broker_option(*app, a->broker);
  app->add_option("--http", a->http, "Serve on ADDR:PORT (port 0: any free port; the URL is printed)")
      ->capture_default_str();
  app->add_option("--http-token", a->http_token,
                  "Bearer token for POST requests, job results and task reads (required for an address "
                  "other than loopback)")
      ->envname("ATASK_HTTP_TOKEN");
  app->add_option(
         "--plugin-dir", a->plugin_dirs,
         "A folder of plugins whose job types to offer; repeatable. Folders of ATASK_PLUGIN_FOLDERS load "
         "first")
      ->allow_extra_args(false);
  app->add_flag("--strict", a->strict, "Refuse to start (exit 1) when a plugin fails to load");
  app->add_option("--jobs-dir", a->jobs_dir,
                  "Where job results are kept (default: <tmp>/atask-api-jobs-<pid>)");
  app->add_option("--threads", a->threads, "Pool threads (requests that read Redis run there)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("-l,--loglevel", a->loglevel, "Log level on stderr")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  add_json_option(*app, a->common);
  app->footer(
      "SIGTERM or SIGINT stops it (open job streams end). Exit codes: 0 stopped, 1 could not start, 2 "
      "usage.");
  return {app, [a] { return run_api(*a); }};
}

}  // namespace atask::cli
