#pragma once
/// @file
/// Writing a plugin: a shared library that registers named tasks (and job
/// types, schedules, and what people see of them) through one exported
/// entry point. Workers, beats and API servers load plugin folders
/// (plugins/loader.hpp, `atask worker --plugin-dir`).
///
/// @code
///   #include <atask/plugins/plugin.hpp>
///
///   int add(int a, int b) { return a + b; }
///
///   void setup(atask::plugins::PluginContext& p) {
///     p.describe("math", "1.2.0", "Arithmetic for the demo");
///     p.task("math.add", add, {}, "Adds two integers", {{"a", "int"}, {"b", "int"}});
///     p.task("math.slow_square", atask::process(+[](int x) { return x * x; }));
///     p.job_type("square", "math.slow_square", {"x"});
///   }
///   ATASK_PLUGIN(setup)
/// @endcode
///
/// Build it with atask_add_plugin() (CMake, cmake/AtaskPlugin.cmake): a
/// module that does not link atask itself but uses the host program's copy,
/// so that there is one task registry, one this_task and one logger.
///
/// The handshake: before registering anything the loader calls
/// atask_plugin_abi(); a plugin built against another plugin ABI is refused
/// with both numbers named, never called further.

#include <atask/distributed/beat.hpp>
#include <atask/tasks/registry.hpp>

#include <boost/json/value.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace atask::plugins {

/// The plugin ABI: raised whenever a type a plugin sees (PluginContext,
/// TaskRegistry, the task and process types, the options structs) changes
/// its layout or meaning. Plugins record the number they were built with.
inline constexpr unsigned abi_version = 3;

/// What people (and the API server's dashboard) see of one task.
struct TaskDoc {
  std::string description{};
  /// Free-form JSON describing the arguments: a JSON Schema, or a simple
  /// {"name": "type"} object. Not checked by atask.
  boost::json::value parameters{};
};

/// A job type (jobs.hpp) whose work is a named task: hosts with an HTTP
/// control plane offer it (distributed::add_remote_job_type()).
struct JobTypeSpec {
  std::string type;
  std::string task;
  /// The job's params, by name, that become the task's arguments in this
  /// order (a missing one is null). Empty: the params object is the task's
  /// one argument.
  std::vector<std::string> arguments{};
  std::string description{};
};

/// What a plugin registered besides the tasks' code.
struct PluginManifest {
  std::string name{}, version{}, description{};
  std::map<std::string, TaskDoc> docs{};  ///< by task name
  std::vector<JobTypeSpec> job_types{};
  std::vector<distributed::BeatEntry> schedules{};  ///< for `atask beat` and `atask worker --beat`
};

/// Handed to the plugin's entry point. The loader registers into a registry
/// of the plugin's own first, and moves the tasks to the host's only when
/// the whole entry point succeeded: a plugin that fails registers nothing.
class PluginContext {
 public:
  PluginContext(TaskRegistry& tasks, PluginManifest& manifest) noexcept
      : tasks_(tasks), manifest_(manifest) {}
  PluginContext(const PluginContext&) = delete;
  PluginContext& operator=(const PluginContext&) = delete;

  /// The plugin's name, version and a line about it (shown by `atask
  /// plugins`, `atask inspect workers` and the dashboard). A plugin that
  /// does not call it is named after its file.
  void describe(std::string name, std::string version, std::string description = {}) {
    manifest_.name = std::move(name);
    manifest_.version = std::move(version);
    manifest_.description = std::move(description);
  }

  /// Registers a task (TaskRegistry::add: a function or callable for a pool
  /// thread, one returning awaitable<T> for a coroutine, atask::process(f)
  /// for a child of the process pool) with what people see of it.
  /// @throws OptionsError as TaskRegistry::add does.
  template <class F>
  void task(std::string name, F f, NamedTaskOptions options = {}, std::string description = {},
            boost::json::value parameters = nullptr) {
    tasks_.add(name, std::move(f), std::move(options));
    manifest_.docs[std::move(name)] = TaskDoc{std::move(description), std::move(parameters)};
  }

  /// A job type running `task` (registered by this plugin or another), its
  /// arguments taken from the job's params by name (JobTypeSpec::arguments).
  void job_type(std::string type, std::string task, std::vector<std::string> arguments = {},
                std::string description = {}) {
    manifest_.job_types.push_back(
        {std::move(type), std::move(task), std::move(arguments), std::move(description)});
  }

  /// A schedule for the beat (distributed/beat.hpp).
  void schedule(distributed::BeatEntry entry) { manifest_.schedules.push_back(std::move(entry)); }

  /// The registry itself, for what task() does not cover.
  TaskRegistry& tasks() noexcept { return tasks_; }

 private:
  TaskRegistry& tasks_;
  PluginManifest& manifest_;
};

}  // namespace atask::plugins

/// Exports the plugin's entry point: `setup` is a function taking
/// atask::plugins::PluginContext&. Once per plugin, at namespace scope.
#define ATASK_PLUGIN(setup)                                                                \
  extern "C" __attribute__((visibility("default"))) unsigned atask_plugin_abi() noexcept { \
    return ::atask::plugins::abi_version;                                                  \
  }                                                                                        \
  extern "C" __attribute__((visibility("default"))) void atask_plugin_register(            \
      ::atask::plugins::PluginContext* context) {                                          \
    setup(*context);                                                                       \
  }
