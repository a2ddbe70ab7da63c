#pragma once
// What the subcommands of the atask program share: the broker option, the
// --json switch, exit codes, an aligned table printer, JSON output, and
// loading plugin folders for a command. docs/cli.md is the user's guide.

#include <atask/plugins/loader.hpp>
#include <atask/tasks/registry.hpp>

#include <CLI/CLI.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace atask::cli {

/// The program's exit codes (docs/cli.md has them per command).
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int failed = 1;     ///< could not start, the task failed, Redis refused, aborted
inline constexpr int usage = 2;      ///< bad arguments
inline constexpr int stopped = 3;    ///< worker: tasks canceled or asked to stop; send --wait: timeout
inline constexpr int abandoned = 4;  ///< worker: tasks abandoned at the cold stage
}  // namespace exit_code

/// An argument that parsed but does not make sense: exit 2 with the
/// subcommand's usage line, as a CLI11 parse error does.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A subcommand: its CLI11 app and what runs it once the command line parsed.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

/// What every subcommand takes.
struct CommonOptions {
  bool json = false;
};

/// --json on `app`.
void add_json_option(CLI::App& app, CommonOptions& o);
/// --broker on `app` (env ATASK_BROKER, else redis://127.0.0.1:6379),
/// checked to be a well-formed redis:// URL.
void add_broker_option(CLI::App& app, std::string& broker);
/// The broker URL without its password, for people to read.
std::string display_broker(const std::string& url);

/// Seconds given on the command line (fractions allowed) as milliseconds.
std::chrono::milliseconds seconds_to_ms(double seconds);
/// "850ms", "12s", "3m04s", "2h05m", "3d04h"; "-" for a negative value.
std::string human_duration(std::int64_t ms);

/// Prints `v` on one line (to stdout unless told otherwise).
void print_json(const boost::json::value& v, std::ostream& out);
void print_json(const boost::json::value& v);

/// An aligned table for people: columns as wide as their widest cell, two
/// spaces apart, a header in capitals.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void add(std::vector<std::string> row);
  bool empty() const noexcept { return rows_.empty(); }
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

/// A stderr logger named "atask" at `level` (trace, debug, info, warn,
/// error).
std::shared_ptr<spdlog::logger> make_logger(const std::string& level);

/// The plugin folders of a command: ATASK_PLUGIN_FOLDERS, then --plugin-dir.
struct PluginSet {
  std::vector<std::filesystem::path> folders;
  plugins::PluginLoad load;
  /// "name@version" of every plugin loaded, in load order.
  std::vector<std::string> labels() const;
  std::vector<distributed::BeatEntry> schedules() const;
};
PluginSet load_plugins(const std::vector<std::string>& dirs, TaskRegistry& tasks,
                       bool from_environment = true);

/// Logs each plugin that failed to load (path and reason). With `strict`
/// and a failure, says on stderr why `atask <command>` refuses to start and
/// returns false.
bool accept_plugins(const PluginSet& s, bool strict, spdlog::logger& log, const std::string& command);

/// JSON of a plugin failure.
boost::json::object failure_json(const plugins::PluginFailure& f);
/// JSON of a loaded plugin: path, name, version, description, its tasks
/// (kind, queue, priority, arity, description, parameters from `tasks`),
/// job types and schedules (`atask plugins --json`, `atask api`'s /api/cluster).
boost::json::object plugin_json(const plugins::LoadedPlugin& p, const TaskRegistry& tasks);

std::string join(const std::vector<std::string>& v, const std::string& sep);

/// --http's "ADDR:PORT", "[v6]:PORT" or ":PORT" (loopback).
/// @throws UsageError for anything else.
std::pair<std::string, unsigned short> parse_http(const std::string& s);

/// A plugin job type's arguments (JobTypeSpec::arguments): the job's params
/// by those names, in order (a missing one is null); none: the params
/// object is the task's one argument (an empty function).
std::function<boost::json::array(const boost::json::object&)> job_arguments(std::vector<std::string> names);

}  // namespace atask::cli
