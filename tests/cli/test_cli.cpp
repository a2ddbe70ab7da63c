// The atask program (src/cli, docs/cli.md), run as a real process: its help
// and usage errors, exit codes, --json output, and a worker process with the
// example plugins serving `atask send`, `inspect`, `requeue` and `purge`,
// each against a redis-server of the test's own.

#include <atask/distributed/client.hpp>

#include "cli_process.hpp"
#include "fixtures.hpp"
#include "http_client.hpp"
#include "redis_server.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace json = boost::json;
namespace dist = atask::distributed;
using namespace std::chrono_literals;
using test::contains;
using test::eventually;
using test::patience;

using namespace test::cli;

namespace {

// The one worker in Redis has one task running, as its heartbeat says.
bool runs_one_task(dist::Client& client) {
  const auto ws = client.workers();
  return ws.size() == 1 && ws[0].running.size() == 1;
}

// The first line of a process's output (its --json "started" event).
json::value first_line(const std::string& out) {
  return parse_json(out.substr(0, out.find('\n')));
}

// The port of an http://address:port URL.
unsigned short port_of(std::string_view url) {
  return static_cast<unsigned short>(std::stoi(std::string(url.substr(url.rfind(':') + 1))));
}

const std::string stubborn_dir = ATASK_TEST_STUBBORN_PLUGIN_DIR;

// The worker's second --json line: its "stopped" event.
json::value stopped_event(test::cli::Worker& w) {
  const std::string out = w.process().out();
  return parse_json(out.substr(out.find('\n') + 1));
}

}  // namespace

TEST_SUITE("cli") {
  TEST_CASE("every subcommand answers --help with its options and exits 0") {
    const std::vector<std::pair<std::string, std::vector<std::string>>> expect{
        {"worker",
         {"--broker", "--queues", "--concurrency", "--processes", "--prefetch", "--plugin-dir", "--strict",
          "--max-tasks-per-child", "--time-limit", "--soft-time-limit", "--hostname", "--loglevel", "--http",
          "--beat", "--json"}},
        {"beat", {"--broker", "--plugin-dir", "--name", "--lease", "--json"}},
        {"send",
         {"NAME", "ARGS_JSON", "--wait", "--timeout", "--queue", "--priority", "--countdown",
          "--idempotency-key", "--json"}},
        {"inspect", {"workers", "queues", "tasks", "dead", "--queue", "--limit", "--json"}},
        {"requeue", {"QUEUE", "ENTRY", "--all", "--json"}},
        {"purge", {"QUEUE", "--yes", "--dead", "--json"}},
        {"plugins", {"DIR", "--json"}},
        {"api",
         {"--broker", "--http", "--http-token", "--plugin-dir", "--strict", "--jobs-dir", "--threads",
          "--loglevel", "--json"}}};
    for (const auto& [cmd, options] : expect) {
      CAPTURE(cmd);
      const auto r = run_atask({cmd, "--help"});
      CHECK(r.code == 0);
      CHECK(contains(r.out, "Usage: atask " + cmd));
      for (const auto& o : options) CHECK_MESSAGE(contains(r.out, o), o << " missing from:\n" << r.out);
    }
    const auto root = run_atask({"--help"});
    CHECK(root.code == 0);
    for (const auto& [cmd, options] : expect) CHECK(contains(root.out, cmd));
    const auto version = run_atask({"--version"});
    CHECK(version.code == 0);
    CHECK(contains(version.out, "atask " ATASK_VERSION));
  }

  TEST_CASE("a bad argument exits 2 with the subcommand's usage line") {
    const std::vector<std::vector<std::string>> bad{{"worker", "--concurrency", "zero"},
                                                    {"worker", "--no-such-option"},
                                                    {"worker", "--loglevel", "loud"},
                                                    {"worker", "--http", "localhost"},
                                                    {"worker", "--broker", "http://example.com"},
                                                    {"inspect", "everything"},
                                                    {"send", "demo.add"},
                                                    {"send", "demo.add", "[1,2]", "--priority", "urgent"},
                                                    {"requeue", "default"},
                                                    {"plugins"}};
    for (const auto& args : bad) {
      CAPTURE(args[0] + " " + args[1 % args.size()]);
      const auto r = run_atask(args);
      CHECK(r.code == 2);
      CHECK_MESSAGE(contains(r.err, "Usage: atask " + args[0]), r.err);
      CHECK(contains(r.err, "error:"));
    }
    const auto none = run_atask({});
    CHECK(none.code == 2);
    CHECK(contains(none.err, "Usage: atask"));
    const auto unknown = run_atask({"frobnicate"});
    CHECK(unknown.code == 2);
  }

  TEST_CASE("send refuses ARGS_JSON that is not a JSON array with exit 2") {
    for (const std::string args : {"{\"a\": 1}", "not json", "5"}) {
      CAPTURE(args);
      const auto r = run_atask({"send", "demo.add", args, "--broker", "redis://127.0.0.1:1"});
      CHECK(r.code == 2);
      CHECK_MESSAGE(contains(r.err, "JSON array"), r.err);
      CHECK(contains(r.err, "Usage: atask send"));
    }
  }

  TEST_CASE("a worker process runs plugin tasks and send --wait prints their results") {
    test::RedisServer redis;
    Worker w(redis, "cli-w1");
    CHECK(contains(w.process().out(), "atask worker cli-w1: broker " + redis.url()));
    CHECK(contains(w.process().out(), "demo-tasks@1.0.0"));

    const auto five = run_atask({"send", "demo.add", "[2,3]", "--wait", "--broker", redis.url()});
    CHECK_MESSAGE(five.code == 0, five.err);
    CHECK(five.out == "5\n");

    const auto j = run_atask({"send", "demo.add", "[20,22]", "--wait", "--json", "--broker", redis.url()});
    CHECK_MESSAGE(j.code == 0, j.err);
    const auto v = parse_json(j.out);
    CHECK(v.at("status") == "succeeded");
    CHECK(v.at("result") == 42);
    CHECK(v.at("id").as_string().size() == 32);

    // A process task: it runs in a child of the worker's process pool, which
    // has the plugin because the worker loaded it before forking.
    const auto sq = run_atask({"send", "demo.square", "[7]", "--wait", "--json", "--broker", redis.url()});
    CHECK_MESSAGE(sq.code == 0, sq.err);
    CHECK(parse_json(sq.out).at("result").at("square") == 49);

    // Without --wait: the id, and the task runs anyway.
    const auto sent = run_atask({"send", "demo.add", "[1,1]", "--broker", redis.url()});
    CHECK(sent.code == 0);
    REQUIRE(sent.out.size() == 33);
    dist::Client client({.broker = redis.url()});
    CHECK(client.handle<int>(sent.out.substr(0, 32)).get_for(patience) == 2);
  }

  TEST_CASE("send --wait exits 1 with the error type and message of a failed task") {
    test::RedisServer redis;
    Worker w(redis, "cli-w2");
    const auto r = run_atask({"send", "demo.add", "[\"two\", 3]", "--wait", "--broker", redis.url()});
    CHECK(r.code == 1);
    CHECK(r.out.empty());
    CHECK_MESSAGE(contains(r.err, "failed: atask::ConversionError"), r.err);
    CHECK_MESSAGE(contains(r.err, "argument 1 does not convert"), r.err);

    const auto j =
        run_atask({"send", "demo.add", "[\"two\", 3]", "--wait", "--json", "--broker", redis.url()});
    CHECK(j.code == 1);
    const auto v = parse_json(j.out);
    CHECK(v.at("status") == "failed");
    CHECK(v.at("error_type") == "atask::ConversionError");
  }

  TEST_CASE(
      "inspect workers shows the worker with its plugins and inspect queues and tasks show its queues") {
    test::RedisServer redis;
    Worker w(redis, "cli-w3", {"-Q", "default,other"});
    const auto r = run_atask({"inspect", "workers", "--json", "--broker", redis.url()});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const auto ws = parse_json(r.out).as_array();
    REQUIRE(ws.size() == 1);
    const auto& me = ws[0].as_object();
    CHECK(me.at("name") == "cli-w3");
    CHECK(me.at("queues") == json::array{"default", "other"});
    CHECK(me.at("pid").as_int64() > 0);
    CHECK(me.at("labels").at("plugins") == "demo-reports@0.3.1 demo-tasks@1.0.0");
    CHECK(me.at("labels").at("version") == ATASK_VERSION);
    // The object /api/cluster shows for a worker: times in seconds, the running ids.
    CHECK(me.at("running").as_array().empty());
    CHECK(me.at("uptime_s").is_double());
    CHECK(me.at("heartbeat_age_s").is_double());

    const auto table = run_atask({"inspect", "workers", "--broker", redis.url()});
    CHECK(table.code == 0);
    CHECK(contains(table.out, "WORKER"));
    CHECK(contains(table.out, "cli-w3"));
    CHECK(contains(table.out, "demo-tasks@1.0.0"));

    const auto q = run_atask({"inspect", "queues", "--json", "--broker", redis.url()});
    REQUIRE(q.code == 0);
    std::vector<std::string> names;
    const auto queues = parse_json(q.out);
    for (const auto& e : queues.as_array()) {
      names.emplace_back(e.at("queue").as_string());
      CHECK(e.at("retrying") == 0);  // of "delayed": waiting for a retry
    }
    CHECK(std::find(names.begin(), names.end(), "default") != names.end());
    CHECK(std::find(names.begin(), names.end(), "other") != names.end());
    const auto qt = run_atask({"inspect", "queues", "--broker", redis.url()});
    CHECK(qt.code == 0);
    CHECK(contains(qt.out, "QUEUE"));
    CHECK(contains(qt.out, "CRITICAL"));
    CHECK(contains(qt.out, "RETRYING"));

    // A task that runs for a while shows under inspect tasks.
    dist::Client client({.broker = redis.url()});
    auto h = client.send("demo.report", {100, 50});  // 5 s, stops early when asked
    REQUIRE(eventually([&] { return h.status() == dist::RemoteStatus::started; }));
    Result t;
    REQUIRE(eventually([&] {
      t = run_atask({"inspect", "tasks", "--json", "--broker", redis.url()});
      return t.code == 0 && !parse_json(t.out).as_array().empty();
    }));
    const auto tasks = parse_json(t.out);
    const auto& task = tasks.as_array()[0];
    CHECK(task.at("id").as_string() == h.id());
    CHECK(task.at("name") == "demo.report");
    CHECK(task.at("worker") == "cli-w3");
    h.cancel();
  }

  TEST_CASE("a task no worker knows goes dead - inspect dead lists it and requeue puts it back") {
    test::RedisServer redis;
    Worker w(redis, "cli-w4");
    const auto r = run_atask({"send", "nobody.knows", "[]", "--wait", "--broker", redis.url()});
    CHECK(r.code == 1);
    CHECK_MESSAGE(contains(r.err, "dead: atask::NotFoundError"), r.err);

    const auto d = run_atask({"inspect", "dead", "--queue", "default", "--json", "--broker", redis.url()});
    REQUIRE(d.code == 0);
    const auto dead = parse_json(d.out).as_array();
    REQUIRE(dead.size() == 1);
    CHECK(dead[0].at("name") == "nobody.knows");
    CHECK(dead[0].at("error_type") == "atask::NotFoundError");
    const std::string entry(dead[0].at("entry").as_string());
    CHECK(dead[0].at("queue") == "default");
    CHECK(dead[0].at("attempts").as_array().size() == 1);  // as /api/cluster/queues/default/dead has it
    const std::string id(dead[0].at("task_id").as_string());

    const auto table = run_atask({"inspect", "dead", "--broker", redis.url()});
    CHECK(contains(table.out, entry));
    CHECK(contains(table.out, "nobody.knows"));

    const auto rq = run_atask({"requeue", "default", entry, "--broker", redis.url()});
    CHECK_MESSAGE(rq.code == 0, rq.err);
    CHECK(rq.out == id + "\n");
    // The worker still does not know it: dead again, as a new entry.
    dist::Client client({.broker = redis.url()});
    CHECK(eventually([&] {
      const auto ds = client.dead_letters("default");
      return ds.size() == 1 && ds[0].entry != entry && ds[0].task_id == id;
    }));
    const auto gone = run_atask({"requeue", "default", entry, "--broker", redis.url()});
    CHECK(gone.code == 1);  // that entry was requeued already

    const auto all = run_atask({"requeue", "default", "--all", "--json", "--broker", redis.url()});
    CHECK(all.code == 0);
    CHECK(parse_json(all.out).at("requeued").as_array().size() == 1);
  }

  TEST_CASE("purge asks for confirmation and purges only when told yes") {
    test::RedisServer redis;
    dist::Client client({.broker = redis.url()});
    for (int i = 0; i < 2; ++i)
      CHECK(run_atask({"send", "demo.add", "[1,2]", "-q", "idle", "--broker", redis.url()}).code == 0);
    CHECK(
        run_atask({"send", "demo.add", "[1,2]", "-q", "idle", "--countdown", "600", "--broker", redis.url()})
            .code == 0);
    auto waiting = [&] {
      const auto s = client.queue_stats("idle");
      return s.queued[0] + s.queued[1] + s.queued[2] + s.queued[3] + s.delayed;
    };
    REQUIRE(waiting() == 3);

    const auto no = run_atask({"purge", "idle", "--broker", redis.url()}, "n\n");
    CHECK(no.code == 1);
    CHECK(contains(no.err, "Purge 3 waiting tasks"));
    CHECK(contains(no.err, "aborted"));
    CHECK(waiting() == 3);
    const auto eof = run_atask({"purge", "idle", "--broker", redis.url()});  // empty stdin: no
    CHECK(eof.code == 1);
    CHECK(waiting() == 3);

    const auto yes = run_atask({"purge", "idle", "--broker", redis.url()}, "y\n");
    CHECK(yes.code == 0);
    CHECK(yes.out == "purged 3 waiting tasks of queue 'idle'\n");
    CHECK(waiting() == 0);

    CHECK(run_atask({"send", "demo.add", "[1,2]", "-q", "idle", "--broker", redis.url()}).code == 0);
    const auto forced = run_atask({"purge", "idle", "--yes", "--json", "--broker", redis.url()});
    CHECK(forced.code == 0);
    CHECK(parse_json(forced.out).at("purged") == 1);
    CHECK(waiting() == 0);
  }

  TEST_CASE("purge --dead asks for confirmation and removes only the dead letters") {
    test::RedisServer redis;
    Worker w(redis, "cli-w9");
    for (int i = 0; i < 2; ++i)
      CHECK(run_atask({"send", "nobody.knows", "[]", "--wait", "--broker", redis.url()}).code == 1);
    // A delayed task of the same queue: not a dead letter, left alone.
    CHECK(run_atask({"send", "demo.add", "[1,2]", "--countdown", "600", "--broker", redis.url()}).code == 0);
    dist::Client client({.broker = redis.url()});
    REQUIRE(client.dead_letters("default").size() == 2);
    REQUIRE(client.queue_stats("default").delayed == 1);

    const auto no = run_atask({"purge", "default", "--dead", "--broker", redis.url()}, "n\n");
    CHECK(no.code == 1);
    CHECK_MESSAGE(contains(no.err, "Purge 2 dead letters of queue 'default'?"), no.err);
    CHECK(contains(no.err, "aborted"));
    CHECK(client.dead_letters("default").size() == 2);

    const auto yes = run_atask({"purge", "default", "--dead", "--broker", redis.url()}, "y\n");
    CHECK_MESSAGE(yes.code == 0, yes.err);
    CHECK(yes.out == "purged 2 dead letters of queue 'default'\n");
    CHECK(client.dead_letters("default").empty());
    CHECK(client.queue_stats("default").delayed == 1);  // the delayed task is still there

    const auto again = run_atask({"purge", "default", "--dead", "--yes", "--json", "--broker", redis.url()});
    CHECK(again.code == 0);
    const auto j = parse_json(again.out);
    CHECK(j.at("purged") == 0);
    CHECK(j.at("dead") == true);
    CHECK(j.at("aborted") == false);
    CHECK(client.queue_stats("default").delayed == 1);
  }

  TEST_CASE("plugins lists what good plugins register and why broken ones failed with exit 1") {
    const auto r = run_atask({"plugins", plugin_dir, broken_dir});
    CHECK(r.code == 1);
    CHECK(contains(r.out, "demo-tasks"));
    CHECK(contains(r.out, "demo.report"));
    CHECK(contains(r.out, "Failed:"));
    for (const char* f :
         {"abi_mismatch.so", "duplicate.so", "missing_symbol.so", "not_a_plugin.so", "throws.so"})
      CHECK_MESSAGE(contains(r.out, f), f);

    const auto j = run_atask({"plugins", plugin_dir, broken_dir, "--json"});
    CHECK(j.code == 1);
    const auto v = parse_json(j.out);
    const auto& plugins = v.at("plugins").as_array();
    REQUIRE(plugins.size() == 2);
    CHECK(plugins[1].at("name") == "demo-tasks");
    CHECK(plugins[1].at("version") == "1.0.0");
    const auto& tasks = plugins[1].at("tasks").as_array();
    REQUIRE(tasks.size() == 2);
    CHECK(tasks[0].at("name") == "demo.add");
    CHECK(tasks[0].at("kind") == "thread");
    CHECK(tasks[1].at("name") == "demo.square");
    CHECK(tasks[1].at("kind") == "process");
    CHECK(plugins[0].at("job_types").as_array()[0].at("type") == "report");
    CHECK(plugins[0].at("schedules").as_array()[0].at("name") == "demo.tick");
    const auto& failed = v.at("failed").as_array();
    REQUIRE(failed.size() == 5);
    CHECK(contains(std::string(failed[0].at("path").as_string()), "abi_mismatch.so"));
    CHECK(contains(std::string(failed[0].at("reason").as_string()), "plugin ABI 999"));

    const auto good = run_atask({"plugins", plugin_dir});
    CHECK(good.code == 0);
  }

  TEST_CASE("worker --strict refuses to start when a plugin fails and names it") {
    const auto r = run_atask({"worker", "--strict", "--plugin-dir", plugin_dir, "--plugin-dir", broken_dir,
                              "--broker", "redis://127.0.0.1:1"});
    CHECK(r.code == 1);
    CHECK_MESSAGE(contains(r.err, "refusing to start"), r.err);
    CHECK_MESSAGE(contains(r.err, "abi_mismatch.so"), r.err);
  }

  TEST_CASE("beat refuses to run when no plugin has a schedule") {
    test::TempDir empty;
    const auto r =
        run_atask({"beat", "--plugin-dir", empty.path().string(), "--broker", "redis://127.0.0.1:1"});
    CHECK(r.code == 1);
    CHECK_MESSAGE(contains(r.err, "no plugin has a schedule"), r.err);
  }

  TEST_CASE("SIGTERM stops a worker with exit 0 and it leaves the cluster") {
    test::RedisServer redis;
    Worker w(redis, "cli-w5", {"--json"});
    const auto started = parse_json(w.process().out());
    CHECK(started.at("event") == "started");
    CHECK(started.at("worker") == "cli-w5");
    CHECK(started.at("plugins").as_array().size() == 2);
    CHECK(run_atask({"send", "demo.add", "[2,3]", "--wait", "--broker", redis.url()}).out == "5\n");

    w.process().signal(SIGTERM);
    CHECK(w.process().wait() == 0);
    const auto last = stopped_event(w);
    CHECK(last.at("event") == "stopped");
    CHECK(last.at("stage") == "warm");
    CHECK(last.at("succeeded") == 1);
    CHECK(last.at("exit_code") == 0);

    const auto r = run_atask({"inspect", "workers", "--json", "--broker", redis.url()});
    CHECK(r.code == 0);
    CHECK(parse_json(r.out).as_array().empty());
  }

  TEST_CASE(
      "a warm stop that runs out of time moves to the soft stage - the running task is asked to stop and the "
      "worker exits 3") {
    test::RedisServer redis;
    Worker w(redis, "cli-w6", {"--warm-timeout", "0.5", "--json"});
    dist::Client client({.broker = redis.url()});
    auto h = client.send<std::string>("demo.report", {400, 50});  // 20 s unless asked to stop
    REQUIRE(eventually([&] { return runs_one_task(client); }));
    w.process().signal(SIGTERM);
    CHECK(w.process().wait() == 3);
    const auto last = stopped_event(w);
    CHECK(last.at("stage") == "soft");
    CHECK(last.at("stop_requested").to_number<int>() >= 1);
    CHECK(last.at("exit_code") == 3);
    // The task saw its stop request and returned early.
    CHECK(contains(h.get_for(patience), "stopped at step"));
  }

  TEST_CASE(
      "a second SIGTERM moves the stop to the soft stage at once - the running task is asked to stop and the "
      "worker exits 3") {
    test::RedisServer redis;
    Worker w(redis, "cli-w8", {"--warm-timeout", "600", "--json"});
    dist::Client client({.broker = redis.url()});
    auto h = client.send<std::string>("demo.report", {400, 50});  // 20 s unless asked to stop
    REQUIRE(eventually([&] { return runs_one_task(client); }));
    w.process().signal(SIGTERM);
    // The second signal only after the first was taken: two pending
    // SIGTERMs are one signal to the kernel.
    REQUIRE(eventually([&] { return contains(w.process().err(), "shutting down (warm stage"); }));
    w.process().signal(SIGTERM);
    CHECK(w.process().wait() == 3);  // long before the 600 s warm stage would end
    const auto last = stopped_event(w);
    CHECK(last.at("stage") == "soft");
    CHECK(last.at("stop_requested").to_number<int>() >= 1);
    CHECK(last.at("exit_code") == 3);
    CHECK(contains(h.get_for(patience), "stopped at step"));
  }

  TEST_CASE("a task that ignores its stop request is abandoned at the cold stage and the worker exits 4") {
    test::RedisServer redis;
    Worker w(redis, "cli-w7",
             {"--plugin-dir", ATASK_TEST_STUBBORN_PLUGIN_DIR, "--warm-timeout", "0.3", "--soft-timeout",
              "0.3", "--json"});
    dist::Client client({.broker = redis.url()});
    auto h = client.send("stubborn.sleep", {60'000});
    REQUIRE(eventually([&] { return runs_one_task(client); }));
    w.process().signal(SIGTERM);  // one signal: warm 0.3 s, soft 0.3 s, then cold
    CHECK(w.process().wait() == 4);
    const auto last = stopped_event(w);
    CHECK(last.at("stage") == "cold");
    CHECK(last.at("abandoned") == 1);
    CHECK(last.at("exit_code") == 4);
  }

  TEST_CASE("beat sends the plugins' scheduled tasks to Redis and --json reports what it sent") {
    test::RedisServer redis;
    Cli beat({"beat", "--broker", redis.url(), "--plugin-dir", plugin_dir, "--name", "cli-beat", "--json",
              "-l", "warn"});
    REQUIRE_MESSAGE(eventually([&] { return beat.poll() || contains(beat.out(), "\n"); }), beat.err());
    REQUIRE_MESSAGE(!beat.poll(), "atask beat exited: " << beat.err());
    const auto started = first_line(beat.out());
    CHECK(started.at("event") == "started");
    CHECK(started.at("beat") == "cli-beat");
    CHECK(started.at("schedules") == json::array{"demo.tick"});
    CHECK(started.at("plugins").as_array().size() == 2);

    // demo.tick sends demo.report [1, 1] every 10 s, the first one 10 s after
    // the beat first sees the schedule: with no worker, it waits in "default".
    dist::Client client({.broker = redis.url()});
    REQUIRE(eventually(
        [&] {
          const auto s = client.queue_stats("default");
          return s.queued[0] + s.queued[1] + s.queued[2] + s.queued[3] >= 1;
        },
        30s));
    beat.signal(SIGTERM);
    CHECK(beat.wait() == 0);
    const std::string out = beat.out();
    const auto stopped = parse_json(out.substr(out.find('\n') + 1));
    CHECK(stopped.at("event") == "stopped");
    CHECK(stopped.at("fired").to_number<int>() >= 1);
  }

  TEST_CASE("worker --beat sends the plugins' schedules and runs the ticks itself") {
    test::RedisServer redis;
    Worker w(redis, "cli-beat-w", {"--beat", "--json"});
    CHECK(first_line(w.process().out()).at("beat") == 1);
    dist::Client client({.broker = redis.url()});
    REQUIRE(eventually(
        [&] {
          const auto ws = client.workers();
          return ws.size() == 1 && ws[0].succeeded >= 1;
        },
        30s));
    w.process().signal(SIGTERM);
    CHECK(w.process().wait() == 0);
    CHECK(stopped_event(w).at("succeeded").to_number<int>() >= 1);
  }

  TEST_CASE("worker --http serves this worker's control plane with the plugins' job types") {
    test::RedisServer redis;
    Worker w(redis, "cli-http", {"--http", "127.0.0.1:0", "--json"});
    const auto started = first_line(w.process().out());
    REQUIRE(started.at("http").is_string());
    const auto port = port_of(started.at("http").as_string());

    auto sv = test::http_request(port, "GET", "/api/supervisor");
    CHECK(sv.status == 200);
    CHECK_MESSAGE(contains(sv.body, "atask-worker"), sv.body);
    auto jobs = test::http_request(port, "GET", "/api/jobs");
    CHECK(jobs.status == 200);
    CHECK_MESSAGE(contains(jobs.body, "\"report\""), jobs.body);
    // A job of the plugin's type: its task sent to the cluster, run here, the
    // reply streamed to its end.
    auto job = test::http_request(port, "POST", "/api/jobs/report", R"({"steps": 2, "step_ms": 1})");
    CHECK(job.status == 200);
    CHECK_MESSAGE(contains(job.body, "\"done\""), job.body);
    // This worker's own control plane: no cluster view.
    CHECK(test::http_request(port, "GET", "/api/cluster").status == 404);
    CHECK(test::http_request(port, "GET", "/").status == 200);

    w.process().signal(SIGTERM);
    CHECK(w.process().wait() == 0);
  }

  TEST_CASE(
      "SIGINT stops a worker in the same stages as SIGTERM - exit 0 when idle and 3 after a second one") {
    test::RedisServer redis;
    {
      Worker idle(redis, "cli-int1", {"--json"});
      idle.process().signal(SIGINT);
      CHECK(idle.process().wait() == 0);
      const auto last = stopped_event(idle);
      CHECK(last.at("stage") == "warm");
      CHECK(last.at("exit_code") == 0);
    }
    Worker w(redis, "cli-int2", {"--warm-timeout", "600", "--json"});
    dist::Client client({.broker = redis.url()});
    auto h = client.send<std::string>("demo.report", {400, 50});  // 20 s unless asked to stop
    REQUIRE(eventually([&] { return runs_one_task(client); }));
    w.process().signal(SIGINT);
    REQUIRE(eventually([&] { return contains(w.process().err(), "shutting down (warm stage"); }));
    w.process().signal(SIGINT);
    CHECK(w.process().wait() == 3);
    const auto last = stopped_event(w);
    CHECK(last.at("stage") == "soft");
    CHECK(last.at("exit_code") == 3);
    CHECK(contains(h.get_for(patience), "stopped at step"));
  }

  TEST_CASE("worker --time-limit stops a thread task that runs past it and kills a process task's child") {
    test::RedisServer redis;
    Worker w(redis, "cli-tl", {"--plugin-dir", stubborn_dir, "--time-limit", "0.5"});
    // demo.report [400, 50] runs 20 s unless asked to stop: at the limit it
    // is asked to and returns what it did so far, which is still a time-out.
    const auto r =
        run_atask({"send", "demo.report", "[400, 50]", "--wait", "--json", "--broker", redis.url()});
    CHECK_MESSAGE(r.code == 1, (r.out + r.err));
    CHECK_MESSAGE(contains(r.out + r.err, "atask::TimeoutError"), (r.out + r.err));

    // A process task: the same child runs one task after another (one
    // child, no --max-tasks-per-child) until one runs past the limit.
    dist::Client client({.broker = redis.url()});
    const int child = client.send<int>("stubborn.nap", {0}).get_for(patience);
    CHECK(client.send<int>("stubborn.nap", {0}).get_for(patience) == child);
    auto killed = client.send<int>("stubborn.nap", {60'000});
    CHECK_THROWS_AS((void)killed.get_for(patience), dist::RemoteError);
    CHECK(killed.status() == dist::RemoteStatus::failed);
    CHECK(client.send<int>("stubborn.nap", {0}).get_for(patience) != child);  // a new child
  }

  TEST_CASE(
      "worker --soft-time-limit asks a process task to stop and --max-tasks-per-child replaces its child") {
    test::RedisServer redis;
    Worker w(redis, "cli-soft",
             {"--plugin-dir", stubborn_dir, "--soft-time-limit", "0.3", "--max-tasks-per-child", "1"});
    dist::Client client({.broker = redis.url()});
    CHECK(client.send<std::string>("stubborn.patient", {60'000}).get_for(patience) == "asked to stop");
    const int first = client.send<int>("stubborn.nap", {0}).get_for(patience);
    const int second = client.send<int>("stubborn.nap", {0}).get_for(patience);
    CHECK(first != second);
  }
}
