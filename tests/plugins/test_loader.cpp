// The plugin loader (plugins/loader.hpp) with the example plugins
// (examples/plugins/) and plugins broken on purpose (tests/plugins/broken/).

#include <atask/plugins/loader.hpp>

#include "fixtures.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <boost/json/value_to.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using atask::plugins::load_plugins;
using atask::plugins::plugin_files;
using atask::plugins::plugin_folders;
using atask::plugins::PluginFailure;

namespace {

const fs::path examples = ATASK_TEST_PLUGIN_DIR;       // demo_reports.so, demo_tasks.so
const fs::path broken = ATASK_TEST_BROKEN_PLUGIN_DIR;  // abi_mismatch.so, duplicate.so, ...

const PluginFailure* failure_of(const atask::plugins::PluginLoad& load, std::string_view file) {
  for (const auto& f : load.failed)
    if (f.path.filename() == file) return &f;
  return nullptr;
}

}  // namespace

TEST_SUITE("plugins") {
  TEST_CASE(
      "plugin folders load in order and every broken plugin is reported with its reason while the good ones "
      "load") {
    atask::TaskRegistry tasks;
    auto load = load_plugins({examples, broken}, tasks);

    REQUIRE(load.loaded.size() == 2);
    CHECK(load.loaded[0].path.filename() == "demo_reports.so");  // byte order within a folder
    CHECK(load.loaded[1].path.filename() == "demo_tasks.so");
    CHECK(load.loaded[0].tasks == std::vector<std::string>{"demo.report"});
    CHECK(load.loaded[1].tasks == std::vector<std::string>{"demo.add", "demo.square"});

    REQUIRE(load.failed.size() == 5);
    CHECK(load.failed[0].path.filename() == "abi_mismatch.so");  // the broken folder, in order
    CHECK(load.failed[4].path.filename() == "throws.so");

    const auto* abi = failure_of(load, "abi_mismatch.so");
    REQUIRE(abi);
    CHECK_MESSAGE(test::contains(abi->reason, "plugin ABI 999"), abi->reason);
    CHECK_MESSAGE(test::contains(abi->reason,
                                 "this atask has plugin ABI " + std::to_string(atask::plugins::abi_version)),
                  abi->reason);

    const auto* dup = failure_of(load, "duplicate.so");
    REQUIRE(dup);
    CHECK_MESSAGE(test::contains(dup->reason, "'demo.add'"), dup->reason);
    CHECK_MESSAGE(test::contains(dup->reason, "demo_tasks.so registered already"), dup->reason);

    const auto* missing = failure_of(load, "missing_symbol.so");
    REQUIRE(missing);
    CHECK_MESSAGE(test::contains(missing->reason, "undefined symbol"), missing->reason);
    CHECK_MESSAGE(test::contains(missing->reason, "atask_test_function_nobody_defines"), missing->reason);
    CHECK_MESSAGE(!test::contains(missing->reason, "Bad file descriptor"),
                  missing->reason);  // Boost's errno text

    const auto* foreign = failure_of(load, "not_a_plugin.so");
    REQUIRE(foreign);
    CHECK_MESSAGE(test::contains(foreign->reason, "is not an atask plugin"), foreign->reason);

    const auto* threw = failure_of(load, "throws.so");
    REQUIRE(threw);
    CHECK_MESSAGE(test::contains(threw->reason, "no licence file at /etc/broken.lic"), threw->reason);

    // A failed plugin registers nothing, not even what it added before failing.
    CHECK(tasks.names() == std::vector<std::string>{"demo.add", "demo.report", "demo.square"});
    CHECK_FALSE(tasks.contains("broken.first"));
    CHECK_FALSE(tasks.contains("duplicate.own"));
  }

  TEST_CASE("a plugin's manifest carries its name, version, task docs, job types and schedules") {
    atask::TaskRegistry tasks;
    auto load = load_plugins({examples}, tasks);
    REQUIRE(load.ok());
    REQUIRE(load.loaded.size() == 2);
    const auto& reports = load.loaded[0].manifest;
    CHECK(reports.name == "demo-reports");
    CHECK(reports.version == "0.3.1");
    REQUIRE(reports.job_types.size() == 1);
    CHECK(reports.job_types[0].type == "report");
    CHECK(reports.job_types[0].task == "demo.report");
    CHECK(reports.job_types[0].arguments == std::vector<std::string>{"steps", "step_ms"});
    REQUIRE(reports.schedules.size() == 1);
    CHECK(reports.schedules[0].name == "demo.tick");
    CHECK(reports.schedules[0].every == 10s);

    const auto& demo = load.loaded[1].manifest;
    CHECK(demo.name == "demo-tasks");
    REQUIRE(demo.docs.contains("demo.add"));
    CHECK(demo.docs.at("demo.add").description == "Adds two integers");
    CHECK(demo.docs.at("demo.add").parameters.as_object().at("a") == "integer");
    CHECK(tasks.find("demo.square")->kind == atask::TaskKind::process);
  }

  TEST_CASE("tasks from a plugin run on a pool thread and in a child of the process pool") {
    atask::TaskRegistry tasks;
    // Loaded before the supervisor starts its process pool: the fork server's
    // children have the plugin mapped.
    REQUIRE(load_plugins({examples}, tasks).ok());
    auto o = test::options("plugins", 2);
    o.processes.pool_size = 1;
    test::StartedSupervisor sv(o);
    CHECK(tasks.submit(sv, "demo.add", {2, 3}).get_for(test::patience) == 5);
    const auto sq = tasks.submit(sv, "demo.square", {7}).get_for(test::patience).as_object();
    CHECK(sq.at("square") == 49);
    CHECK(sq.at("pid").to_number<int>() != ::getpid());
  }

  TEST_CASE(
      "plugin folders come from ATASK_PLUGIN_FOLDERS then the given ones and only top-level .so files load "
      "once each") {
    test::TempDir dir;
    const fs::path a = dir.path() / "a", b = dir.path() / "b";
    fs::create_directories(a / "sub");
    fs::create_directories(b);
    fs::create_symlink(examples / "demo_tasks.so", a / "z.so");
    fs::create_symlink(examples / "demo_reports.so", a / "m.so");
    fs::create_symlink(examples / "demo_tasks.so", a / "sub" / "deeper.so");  // not top-level
    std::ofstream(a / "README.txt") << "not a plugin\n";
    fs::create_symlink(a / "z.so", b / "again.so");  // the same file once more

    ::setenv("ATASK_PLUGIN_FOLDERS", (":" + a.string() + "::" + (dir.path() / "gone").string()).c_str(), 1);
    const auto folders = plugin_folders({b.string()});
    ::unsetenv("ATASK_PLUGIN_FOLDERS");
    REQUIRE(folders.size() == 3);
    CHECK(folders[0] == a);
    CHECK(folders[1] == dir.path() / "gone");
    CHECK(folders[2] == b);
    CHECK(plugin_folders({b.string()}, false) == std::vector<fs::path>{b});

    std::vector<PluginFailure> failed;
    const auto files = plugin_files(folders, failed);
    CHECK(files == std::vector<fs::path>{a / "m.so", a / "z.so"});
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].path == dir.path() / "gone");
    CHECK(failed[0].reason == "does not exist");
    failed.clear();
    (void)plugin_files({a / "README.txt"}, failed);
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].reason == "is not a folder");
  }

  TEST_CASE("a task name the program registered itself is refused naming the program") {
    atask::TaskRegistry first;
    REQUIRE(load_plugins({examples}, first).ok());  // demo_tasks registered demo.add there
    atask::TaskRegistry mine;
    mine.add("demo.add", [](int a, int b) { return a * b; });
    auto load = load_plugins({examples}, mine);
    REQUIRE(load.failed.size() == 1);
    CHECK_MESSAGE(test::contains(load.failed[0].reason, "which the program registered already"),
                  load.failed[0].reason);
  }

  TEST_CASE("TaskRegistry merge moves every task or none") {
    atask::TaskRegistry host, staged;
    host.add("a", [] { return 1; });
    staged.add("b", [] { return 2; });
    staged.add("a", [] { return 3; });
    CHECK(test::contains(test::what_of<atask::OptionsError>([&] { host.merge(staged); }),
                         "'a' is already registered"));
    CHECK(host.names() == std::vector<std::string>{"a"});
    atask::TaskRegistry other;
    other.add("c", [] { return 4; });
    host.merge(other);
    CHECK(host.names() == std::vector<std::string>{"a", "c"});
    CHECK(other.names().empty());
  }

}  // TEST_SUITE
