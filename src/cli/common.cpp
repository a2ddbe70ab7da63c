#include "cli/common.hpp"

#include <atask/core/errors.hpp>
#include <atask/util/enum_names.hpp>

#include "distributed/redis/connection.hpp"
#include "util/json_text.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iostream>

namespace atask::cli {

namespace json = boost::json;

void add_json_option(CLI::App& app, CommonOptions& o) {
  app.add_flag("--json", o.json, "Print machine-readable JSON instead of a table");
}

void add_broker_option(CLI::App& app, std::string& broker) {
  broker = "redis://127.0.0.1:6379";
  app.add_option("--broker", broker, "Redis URL redis://[[user]:password@]host[:port][/db]")
      ->envname("ATASK_BROKER")
      ->capture_default_str()
      ->check(
          [](const std::string& url) -> std::string {
            try {
              (void)redis::parse_url(url);
              return {};
            } catch (const std::exception& e) {
              return e.what();
            }
          },
          "URL");
}

std::string display_broker(const std::string& url) {
  try {
    return redis::parse_url(url).to_string();
  } catch (const std::exception&) {
    return "(malformed URL)";
  }
}

std::chrono::milliseconds seconds_to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

std::string human_duration(std::int64_t ms) {
  if (ms < 0) return "-";
  auto two = [](std::int64_t v) { return (v < 10 ? "0" : "") + std::to_string(v); };
  if (ms < 1000) return std::to_string(ms) + "ms";
  const std::int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + two(s % 60) + "s";
  if (s < 86400) return std::to_string(s / 3600) + "h" + two(s / 60 % 60) + "m";
  return std::to_string(s / 86400) + "d" + two(s / 3600 % 24) + "h";
}

void print_json(const json::value& v, std::ostream& out) {
  out << detail::json_text(v) << std::endl;
}

void print_json(const json::value& v) {
  print_json(v, std::cout);
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add(std::vector<std::string> row) {
  row.resize(headers_.size());
  rows_.push_back(std::move(row));
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> width(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) width[c] = headers_[c].size();
  for (const auto& r : rows_)
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      l += cells[c];
      if (c + 1 < cells.size()) l += std::string(width[c] - cells[c].size() + 2, ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out << l << '\n';
  };
  std::vector<std::string> head;
  for (auto h : headers_) {
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char ch) { return std::toupper(ch); });
    head.push_back(std::move(h));
  }
  line(head);
  for (const auto& r : rows_) line(r);
  out.flush();
}

std::shared_ptr<spdlog::logger> make_logger(const std::string& level) {
  auto log = std::make_shared<spdlog::logger>("atask", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log->set_level(spdlog::level::from_str(level));
  return log;
}

std::vector<std::string> PluginSet::labels() const {
  std::vector<std::string> out;
  for (const auto& p : load.loaded)
    out.push_back(p.manifest.version.empty() ? p.manifest.name : p.manifest.name + "@" + p.manifest.version);
  return out;
}

std::vector<distributed::BeatEntry> PluginSet::schedules() const {
  std::vector<distributed::BeatEntry> out;
  for (const auto& p : load.loaded)
    out.insert(out.end(), p.manifest.schedules.begin(), p.manifest.schedules.end());
  return out;
}

PluginSet load_plugins(const std::vector<std::string>& dirs, TaskRegistry& tasks, bool from_environment) {
  PluginSet s;
  s.folders = plugins::plugin_folders(dirs, from_environment);
  s.load = plugins::load_plugins(s.folders, tasks);
  return s;
}

bool accept_plugins(const PluginSet& s, bool strict, spdlog::logger& log, const std::string& command) {
  for (const auto& f : s.load.failed) log.error("plugin {}: {}", f.path.string(), f.reason);
  if (!strict || s.load.ok()) return true;
  std::cerr << "atask " << command << ": refusing to start (--strict): " << s.load.failed.size()
            << " plugin(s) failed to load; first: " << s.load.failed[0].path.string() << ": "
            << s.load.failed[0].reason << "\n";
  return false;
}

json::object failure_json(const plugins::PluginFailure& f) {
  return {{"path", f.path.string()}, {"reason", f.reason}};
}

json::object plugin_json(const plugins::LoadedPlugin& p, const TaskRegistry& tasks) {
  json::array ts, jts, schs;
  for (const auto& name : p.tasks) {
    json::object t{{"name", name}};
    if (auto info = tasks.find(name)) {
      t["kind"] = to_string(info->kind);
      t["queue"] = info->options.queue;
      t["priority"] = to_string(info->options.priority);
      t["arity"] = info->arity;
    }
    if (auto d = p.manifest.docs.find(name); d != p.manifest.docs.end()) {
      t["description"] = d->second.description;
      t["parameters"] = d->second.parameters;
    }
    ts.push_back(std::move(t));
  }
  for (const auto& j : p.manifest.job_types)
    jts.push_back(json::object{{"type", j.type},
                               {"task", j.task},
                               {"arguments", json::array(j.arguments.begin(), j.arguments.end())},
                               {"description", j.description}});
  for (const auto& e : p.manifest.schedules) {
    json::object o{{"name", e.name}, {"task", e.task}, {"args", e.args}};
    if (!e.cron.empty()) {
      o["cron"] = e.cron;
      o["time_zone"] = e.time_zone;
    } else {
      o["every_ms"] = e.every.count();
    }
    schs.push_back(std::move(o));
  }
  return json::object{{"path", p.path.string()},
                      {"name", p.manifest.name},
                      {"version", p.manifest.version},
                      {"description", p.manifest.description},
                      {"tasks", ts},
                      {"job_types", jts},
                      {"schedules", schs}};
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i == 0 ? "" : sep) + v[i];
  return s;
}

// "ADDR:PORT", "[v6]:PORT" or ":PORT" (loopback).
std::pair<std::string, unsigned short> parse_http(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) throw UsageError("--http: expected ADDR:PORT, got '" + s + "'");
  std::string addr = s.substr(0, colon);
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
  if (addr.empty()) addr = "127.0.0.1";
  const std::string port = s.substr(colon + 1);
  unsigned long p = 0;
  try {
    std::size_t used = 0;
    p = std::stoul(port, &used);
    if (used != port.size() || p > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    throw UsageError("--http: '" + port + "' is not a port (0-65535)");
  }
  return {addr, static_cast<unsigned short>(p)};
}

// The job's params, by the names the plugin gave, as the task's arguments.
std::function<json::array(const json::object&)> job_arguments(std::vector<std::string> names) {
  if (names.empty()) return {};  // the params object is the one argument
  return [names = std::move(names)](const json::object& params) {
    json::array a;
    for (const auto& n : names) {
      const auto* v = params.if_contains(n);
      a.push_back(v ? *v : json::value(nullptr));
    }
    return a;
  };
}

}  // namespace atask::cli
