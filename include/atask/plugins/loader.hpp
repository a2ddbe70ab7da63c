#pragma once
/// @file
/// Loading plugin folders into a task registry (plugins/plugin.hpp has how
/// a plugin is written).
///
/// @code
///   atask::TaskRegistry tasks;
///   auto folders = atask::plugins::plugin_folders({"/opt/plugins"});  // + ATASK_PLUGIN_FOLDERS
///   auto load = atask::plugins::load_plugins(folders, tasks);
///   for (auto& f : load.failed) log.error("{}: {}", f.path.string(), f.reason);
/// @endcode
///
/// - A folder's plugins are its top-level files named `*.so` (symbolic
///   links followed; sub-folders and other files ignored), loaded in byte
///   order of their names, folder after folder. The same file named twice is
///   loaded once.
/// - A plugin that fails (not a plugin, another ABI, a missing symbol, an
///   exception from its entry point, a task name taken by a plugin before it
///   or by the host) registers nothing and is listed in `failed` with the
///   reason; the others still load. Refusing to start then (`--strict`) is
///   the caller's choice.
/// - Loaded plugins are never unloaded: the registry holds their code, and
///   tasks (and forked children of the process pool) may run it at any time
///   until the process exits. Load before the supervisor starts its process
///   pool, so that the fork server's children have the plugins too.
/// - The host program must export its symbols to plugins
///   (atask_export_to_plugins() in CMake).

#include <atask/plugins/plugin.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace atask::plugins {

struct LoadedPlugin {
  std::filesystem::path path;
  PluginManifest manifest;
  std::vector<std::string> tasks;  ///< the names it registered, sorted
};

struct PluginFailure {
  std::filesystem::path path;  ///< the plugin file, or the folder that could not be read
  std::string reason;
};

struct PluginLoad {
  std::vector<LoadedPlugin> loaded;
  std::vector<PluginFailure> failed;
  bool ok() const noexcept { return failed.empty(); }
};

/// The folders of the ATASK_PLUGIN_FOLDERS environment variable (colon-
/// separated; empty entries skipped) when `from_environment`, then `extra`.
std::vector<std::filesystem::path> plugin_folders(const std::vector<std::string>& extra,
                                                  bool from_environment = true);

/// The plugin files of `folders`, in load order. A folder that does not
/// exist or cannot be read is listed in `failed`.
std::vector<std::filesystem::path> plugin_files(const std::vector<std::filesystem::path>& folders,
                                                std::vector<PluginFailure>& failed);

/// Loads the plugins of `folders` into `tasks`.
PluginLoad load_plugins(const std::vector<std::filesystem::path>& folders, TaskRegistry& tasks);

/// Loads one plugin file into `tasks`.
/// @throws atask::Error (PluginError) with the reason when it fails; `tasks`
///         is then unchanged.
LoadedPlugin load_plugin(const std::filesystem::path& file, TaskRegistry& tasks);

}  // namespace atask::plugins
