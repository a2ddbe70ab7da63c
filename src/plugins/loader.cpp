// Plugin folders -> a task registry, through Boost.DLL (header-only; with
// std::filesystem paths).

#include <atask/plugins/loader.hpp>

#define BOOST_DLL_USE_STD_FS
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace atask::plugins {

namespace fs = std::filesystem;
namespace dll = boost::dll;

namespace {

// Loaded plugins stay loaded until the process exits (loader.hpp says why):
// their handles are kept here and never closed.
void keep_forever(dll::shared_library lib) {
  static std::mutex m;
  static auto* kept = new std::vector<dll::shared_library>();
  std::lock_guard lk(m);
  kept->push_back(std::move(lib));
}

// Boost.DLL's message is "<what> failed (dlerror system message: <why>):
// <an errno text that means nothing here>": keep <why>.
std::string dl_reason(const std::exception& e) {
  std::string w = e.what();
  static constexpr std::string_view tag = "dlerror system message: ";
  if (auto at = w.find(tag); at != std::string::npos) {
    w = w.substr(at + tag.size());
    if (auto close = w.rfind(')'); close != std::string::npos) w.erase(close);
  }
  return w;
}

// Which plugin registered which task into which registry, for "taken by"
// messages.
std::mutex& owners_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::pair<const TaskRegistry*, std::string>, fs::path>& owners() {
  static auto* m = new std::map<std::pair<const TaskRegistry*, std::string>, fs::path>();
  return *m;
}

[[noreturn]] void fail(const fs::path& file, const std::string& why) {
  throw PluginError("plugin " + file.string() + ": " + why);
}

}  // namespace

std::vector<fs::path> plugin_folders(const std::vector<std::string>& extra, bool from_environment) {
  std::vector<fs::path> out;
  if (from_environment)
    if (const char* env = std::getenv("ATASK_PLUGIN_FOLDERS")) {
      std::istringstream in(env);
      for (std::string one; std::getline(in, one, ':');)
        if (!one.empty()) out.emplace_back(one);
    }
  for (const auto& e : extra)
    if (!e.empty()) out.emplace_back(e);
  return out;
}

std::vector<fs::path> plugin_files(const std::vector<fs::path>& folders, std::vector<PluginFailure>& failed) {
  std::vector<fs::path> out;
  std::set<fs::path> seen;
  for (const auto& folder : folders) {
    std::error_code ec;
    const auto st = fs::status(folder, ec);
    if (st.type() == fs::file_type::not_found || !fs::is_directory(st)) {
      failed.push_back({folder, st.type() == fs::file_type::not_found ? "does not exist"
                                : ec                                  ? "cannot be read: " + ec.message()
                                                                      : "is not a folder"});
      continue;
    }
    std::vector<fs::path> here;
    fs::directory_iterator it(folder, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      std::error_code fec;
      if (p.extension() == ".so" && fs::is_regular_file(p, fec)) here.push_back(p);  // follows links
    }
    if (ec) {
      failed.push_back({folder, "cannot be read: " + ec.message()});
      continue;
    }
    std::sort(here.begin(), here.end(), [](const fs::path& a, const fs::path& b) {
      return a.filename().native() < b.filename().native();
    });
    for (auto& p : here) {
      std::error_code cec;
      fs::path canonical = fs::weakly_canonical(p, cec);
      if (seen.insert(cec ? p : canonical).second) out.push_back(std::move(p));
    }
  }
  return out;
}

LoadedPlugin load_plugin(const fs::path& file, TaskRegistry& tasks) {
  dll::shared_library lib;
  try {
    // Now, not lazily: a missing symbol is an error here, not a crash later.
    lib.load(file, dll::load_mode::rtld_now | dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    fail(file, "cannot be loaded: " + dl_reason(e));
  }
  if (!lib.has("atask_plugin_abi"))
    fail(file,
         "is not an atask plugin: it exports no atask_plugin_abi (see ATASK_PLUGIN in plugins/plugin.hpp)");
  const unsigned theirs = lib.get<unsigned()>("atask_plugin_abi")();
  if (theirs != abi_version)
    fail(file, "was built for atask plugin ABI " + std::to_string(theirs) +
                   ", but this atask has plugin ABI " + std::to_string(abi_version) +
                   ": rebuild it against this atask");
  if (!lib.has("atask_plugin_register")) fail(file, "exports atask_plugin_abi but no atask_plugin_register");
  auto* entry = lib.get<void(PluginContext*)>("atask_plugin_register");

  LoadedPlugin out;
  out.path = file;
  {
    // The plugin's own registry: destroyed (with whatever code of the plugin
    // it holds) before `lib` unloads, when something fails.
    TaskRegistry staged;
    PluginContext context(staged, out.manifest);
    std::string failed;
    try {
      entry(&context);
    } catch (const std::exception& e) {
      failed = std::string("its entry point threw: ") + e.what();  // copied: the type lives in the plugin
    } catch (...) {
      failed = "its entry point threw something that is not a std::exception";
    }
    if (!failed.empty()) fail(file, failed);
    out.tasks = staged.names();
    for (const auto& [name, doc] : out.manifest.docs)
      if (!staged.contains(name)) fail(file, "documents a task it did not register: '" + name + "'");
    std::lock_guard lk(owners_mutex());
    for (const auto& name : out.tasks)
      if (tasks.contains(name)) {
        auto o = owners().find({&tasks, name});
        fail(file,
             "registers the task '" + name + "', which " +
                 (o != owners().end() ? "the plugin " + o->second.string() : std::string("the program")) +
                 " registered already");
      }
    try {
      tasks.merge(staged);
    } catch (const std::exception& e) {
      fail(file, e.what());  // a task added by another thread meanwhile
    }
    for (const auto& name : out.tasks) owners()[{&tasks, name}] = file;
  }
  if (out.manifest.name.empty()) out.manifest.name = file.stem().string();
  std::sort(out.tasks.begin(), out.tasks.end());
  keep_forever(std::move(lib));
  return out;
}

PluginLoad load_plugins(const std::vector<fs::path>& folders, TaskRegistry& tasks) {
  PluginLoad out;
  for (const auto& file : plugin_files(folders, out.failed)) {
    try {
      out.loaded.push_back(load_plugin(file, tasks));
    } catch (const PluginError& e) {
      std::string why = e.what();
      const std::string head = "plugin " + file.string() + ": ";
      if (why.rfind(head, 0) == 0) why.erase(0, head.size());
      out.failed.push_back({file, std::move(why)});
    }
  }
  return out;
}

}  // namespace atask::plugins
