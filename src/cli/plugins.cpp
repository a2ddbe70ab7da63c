// `atask plugins DIR...`: what plugin folders would register. The plugins'
// entry points run (into a scratch registry), none of their tasks does.

#include "cli/commands.hpp"
#include "util/json_text.hpp"

#include <boost/json/object.hpp>

#include <iostream>

namespace atask::cli {

namespace json = boost::json;

namespace {

struct PluginsArgs {
  CommonOptions common;
  std::vector<std::string> dirs;
};

std::string when_of(const distributed::BeatEntry& e) {
  if (!e.cron.empty()) return "cron '" + e.cron + "' " + e.time_zone;
  return "every " + human_duration(e.every.count());
}

int run_plugins(const PluginsArgs& a) {
  TaskRegistry tasks;
  // Only the folders named: what they hold, not what the environment adds.
  const PluginSet s = load_plugins(a.dirs, tasks, /*from_environment=*/false);

  if (a.common.json) {
    json::array plugins, failed;
    for (const auto& p : s.load.loaded) {
      plugins.push_back(plugin_json(p, tasks));
    }
    for (const auto& f : s.load.failed) failed.push_back(failure_json(f));
    print_json(json::object{{"plugins", plugins}, {"failed", failed}});
    return s.load.ok() ? exit_code::ok : exit_code::failed;
  }

  Table pt({"file", "plugin", "version", "description"});
  Table tt({"plugin", "task", "kind", "queue", "priority", "description"});
  Table jt({"plugin", "job type", "task", "arguments", "description"});
  Table st({"plugin", "schedule", "when", "task", "args"});
  for (const auto& p : s.load.loaded) {
    pt.add({p.path.filename().string(), p.manifest.name, p.manifest.version, p.manifest.description});
    for (const auto& name : p.tasks) {
      const auto info = tasks.find(name);
      const auto d = p.manifest.docs.find(name);
      tt.add({p.manifest.name, name, info ? std::string(to_string(info->kind)) : "?",
              info ? info->options.queue : "?", info ? std::string(to_string(info->options.priority)) : "?",
              d != p.manifest.docs.end() ? d->second.description : ""});
    }
    for (const auto& j : p.manifest.job_types)
      jt.add({p.manifest.name, j.type, j.task,
              j.arguments.empty() ? "(params object)" : join(j.arguments, ","), j.description});
    for (const auto& e : p.manifest.schedules)
      st.add({p.manifest.name, e.name, when_of(e), e.task, detail::json_text(e.args)});
  }
  bool first = true;
  auto section = [&](const char* title, const Table& t) {
    if (t.empty()) return;
    std::cout << (first ? "" : "\n") << title << ":\n";
    first = false;
    t.print(std::cout);
  };
  section("Plugins", pt);
  section("Tasks", tt);
  section("Job types", jt);
  section("Schedules", st);
  if (!s.load.ok()) {
    Table ft({"path", "reason"});
    for (const auto& f : s.load.failed) ft.add({f.path.string(), f.reason});
    section("Failed", ft);
  }
  if (first) std::cout << "no plugins in " << join(a.dirs, ", ") << std::endl;
  return s.load.ok() ? exit_code::ok : exit_code::failed;
}

}  // namespace

Command plugins_command(CLI::App& root) {
  auto a = std::make_shared<PluginsArgs>();
  auto* app = root.add_subcommand(
      "plugins", "List what plugin folders register (tasks, job types, schedules), running no task");
  app->add_option("DIR", a->dirs, "Plugin folders (their top-level *.so files)")->required();
  add_json_option(*app, a->common);
  app->footer("Exit codes: 0 every plugin loaded, 1 a plugin failed (listed with its reason), 2 usage.");
  return {app, [a] { return run_plugins(*a); }};
}

}  // namespace atask::cli
