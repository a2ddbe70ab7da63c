// `atask beat`: the plugins' schedules, sent to the cluster by a
// distributed::Beat until SIGTERM/SIGINT. Any number of beats may run; one
// leads at a time (a lease in Redis).

#include "cli/commands.hpp"

#include <atask/distributed/beat.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <boost/json/object.hpp>

#include <spdlog/spdlog.h>

#include <iostream>

namespace atask::cli {

namespace json = boost::json;
namespace dist = atask::distributed;

namespace {

struct BeatArgs {
  CommonOptions common;
  std::string broker;
  std::vector<std::string> plugin_dirs;
  std::string name;
  double lease = 10;
  std::string loglevel = "info";
};

int run_beat(const BeatArgs& a) {
  auto log = make_logger(a.loglevel);
  TaskRegistry tasks;  // the plugins register into it; the beat only sends
  PluginSet plugins = load_plugins(a.plugin_dirs, tasks);
  for (const auto& f : plugins.load.failed) log->error("plugin {}: {}", f.path.string(), f.reason);
  const auto schedules = plugins.schedules();
  if (schedules.empty()) {
    std::cerr << "atask beat: no plugin has a schedule (loaded " << plugins.load.loaded.size()
              << " plugin(s) from " << plugins.folders.size() << " folder(s)): nothing to run\n";
    return exit_code::failed;
  }

  Supervisor sv({.id = "atask-beat",
                 .pool_size = 1,
                 .handle_signals = true,
                 .signal_stop = {.cancel_queued = false},
                 .logger = log});
  dist::Beat beat(sv, schedules, {.broker = a.broker, .name = a.name, .lease = seconds_to_ms(a.lease)});
  try {
    sv.start();
  } catch (const std::exception& e) {
    std::cerr << "atask beat: could not start: " << e.what() << "\n";
    return exit_code::failed;
  }
  const std::string name = beat.info().name;
  std::vector<std::string> names;
  for (const auto& s : schedules) names.push_back(s.name);
  if (a.common.json) {
    json::array sch(names.begin(), names.end());
    const auto labels = plugins.labels();
    print_json(json::object{{"event", "started"},
                            {"beat", name},
                            {"broker", display_broker(a.broker)},
                            {"schedules", sch},
                            {"plugins", json::array(labels.begin(), labels.end())}});
  } else {
    std::cout << "atask beat " << name << ": broker " << display_broker(a.broker) << ", schedules "
              << join(names, ",") << ", plugins " << join(plugins.labels(), " ") << std::endl;
  }
  const StopReport r = sv.block();
  const auto info = beat.info();
  if (a.common.json)
    print_json(json::object{
        {"event", "stopped"}, {"beat", name}, {"stage", to_string(r.stage)}, {"fired", info.fired}});
  else
    std::cout << "atask beat " << name << ": stopped (" << info.fired << " task(s) sent)" << std::endl;
  return exit_code::ok;
}

}  // namespace

Command beat_command(CLI::App& root) {
  auto a = std::make_shared<BeatArgs>();
  auto* app = root.add_subcommand("beat", "Send the plugins' scheduled tasks to the cluster");
  add_broker_option(*app, a->broker);
  app->add_option(
         "--plugin-dir", a->plugin_dirs,
         "A folder of plugins (*.so) whose schedules to run; repeatable. Folders of ATASK_PLUGIN_FOLDERS "
         "load first")
      ->allow_extra_args(false);
  app->add_option("-n,--name", a->name, "This beat's name in Redis; default <host>:<pid>:<random>");
  app->add_option("--lease", a->lease,
                  "Seconds a leader's lease lasts without renewal (the others take over after it)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("-l,--loglevel", a->loglevel, "Log level on stderr")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  add_json_option(*app, a->common);
  app->footer(
      "Runs until SIGTERM or SIGINT. Exit codes: 0 stopped, 1 no schedule or could not start, 2 usage.");
  return {app, [a] { return run_beat(*a); }};
}

}  // namespace atask::cli
