// Remote jobs: a job on an API server whose work runs on a cluster worker.
// The job's HTTP progress stream shows what the remote task reports.
#include <atask/atask.hpp>
#include <atask/distributed/client.hpp>
#include <atask/distributed/consumer.hpp>
#include <atask/distributed/remote_jobs.hpp>
#include <atask/http.hpp>
#include <atask/jobs.hpp>
#include <atask/tasks/registry.hpp>

#include <doctest/doctest.h>

#include "distributed_fixtures.hpp"
#include "fixtures.hpp"
#include "http_client.hpp"
#include "redis_server.hpp"

#include <boost/json.hpp>

#include <condition_variable>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace dist = atask::distributed;
namespace json = boost::json;
using namespace std::chrono_literals;
using namespace test;

namespace {

// The API server (Jobs, HTTP, a Client) and one worker process's parts
// (Supervisor, Consumer), both in this process, talking through Redis.
struct Cluster {
  RedisServer redis;
  TempDir dir;
  atask::TaskRegistry tasks;
  Event half, release, running;
  OpenOnExit open{&release};

  atask::Supervisor worker_sv{options("rj-worker")};
  std::optional<dist::Consumer> worker;

  atask::Supervisor api_sv{options("rj-api", 4)};
  std::optional<dist::Client> client;
  std::unique_ptr<atask::Jobs> jobs;
  std::optional<atask::http::Server> server;

  Cluster() {
    tasks.add("index", [this](json::object p) {
      dist::report_progress(0.5, "half way");
      half.set();
      if (!release.wait_for()) throw std::runtime_error("never released");
      dist::report_progress(0.9, "almost");
      return json::object{{"pages", p.at("doc").as_int64() * 10}};
    });
    tasks.add("broken", [](json::object) -> int { throw std::runtime_error("no such page"); });
    tasks.add("forever", [this](json::object) {
      running.set();
      wait_until_stopped();
      throw atask::TaskCanceled("stopped as asked");
    });
    worker.emplace(worker_sv, tasks,
                   dist::ConsumerOptions{.broker = redis.url(),
                                         .name = "rj-w",
                                         .heartbeat = 100ms,
                                         .dead_after = 1000ms,
                                         .stop_timeout = 2000ms});
    worker_sv.start();

    client.emplace(dist::ClientOptions{.broker = redis.url()});
    jobs = std::make_unique<atask::Jobs>(api_sv, atask::JobsOptions{.storage_dir = dir.path()});
    dist::add_remote_job_type(*jobs, *client, "index", "index");
    dist::add_remote_job_type(*jobs, *client, "broken", "broken");
    dist::add_remote_job_type(*jobs, *client, "forever", "forever", {.stop_grace = 10'000ms});
    server = atask::http::serve(api_sv, {.port = 0, .jobs = jobs.get()});
    api_sv.start();
  }
  ~Cluster() {
    release.set();
    api_sv.stop();
    jobs.reset();
    worker_sv.stop();
  }
};

std::string file_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_SUITE("distributed") {
  TEST_CASE("two API servers asked for the same remote job share one task on the cluster") {
    Cluster c;
    // A second API server: its own supervisor, Jobs and client.
    TempDir dir2;
    atask::Supervisor api2(options("rj-api2", 2));
    dist::Client client2({.broker = c.redis.url()});
    auto jobs2 = std::make_unique<atask::Jobs>(api2, atask::JobsOptions{.storage_dir = dir2.path()});
    dist::add_remote_job_type(*jobs2, client2, "index", "index");
    api2.start();

    auto one = c.jobs->ensure_run("index", {{"doc", 3}});
    REQUIRE(c.half.wait_for());  // the task runs on the worker
    auto two = jobs2->ensure_run("index", {{"doc", 3}});
    c.release.set();
    const auto a = one.wait(), b = two.wait();
    CHECK(a.status == atask::JobStatus::done);
    CHECK(b.status == atask::JobStatus::done);
    CHECK(file_text(a.result_path) == R"({"pages":30})");
    CHECK(file_text(b.result_path) == R"({"pages":30})");
    // The worker counts a task once Redis answered its completion, which can
    // be after the client saw the result.
    CHECK(eventually([&] { return c.worker->info().succeeded == 1; }));  // one run for both
    api2.stop();
    jobs2.reset();
  }

  TEST_CASE("a remote job streams the worker's progress over HTTP and keeps the task's result") {
    Cluster c;
    HttpConnection http(c.server->port());
    http.send("POST", "/api/jobs/index", R"({"doc": 7})");
    http.read_header();
    REQUIRE(http.stream_status() == 200);
    // The worker's report reaches the stream while the task still runs.
    (void)http.read_body_until([](const std::string& b) { return contains(b, "half way"); });
    REQUIRE(c.half.wait_for());
    CHECK_FALSE(http.stream_done());
    c.release.set();
    auto body = http.read_body_until([](const std::string&) { return false; });
    REQUIRE(http.stream_done());
    auto events = json::parse(body).as_array();
    REQUIRE(events.size() >= 2);
    CHECK(events.back().at("status").as_string() == "done");
    const auto result = json::value_to<std::string>(events.back().at("result"));
    CHECK(file_text(c.dir.path() / result) == R"({"pages":70})");
    CHECK(eventually([&] { return c.worker->info().succeeded == 1; }));
  }

  TEST_CASE("a remote job fails with the worker's error - asked to stop, it cancels its task") {
    Cluster c;
    auto failed = c.jobs->ensure_run("broken", {{"doc", 1}}).wait();
    CHECK(failed.status == atask::JobStatus::failed);
    CHECK(contains(failed.error, "std::runtime_error"));
    CHECK(contains(failed.error, "no such page"));

    auto job = c.jobs->ensure_run("forever", {});
    REQUIRE(c.running.wait_for());
    CHECK(job.info().status == atask::JobStatus::running);
    // Destroying the Jobs asks its jobs to stop: the remote task is canceled
    // and the job ends failed, well before stop_grace.
    (void)call_within("~Jobs()", [&] {
      c.jobs.reset();
      return 0;
    });
    const auto info = job.info();
    CHECK(info.status == atask::JobStatus::failed);
    CHECK(eventually([&] { return c.worker->info().canceled == 1; }));

    CHECK_THROWS_AS(dist::add_remote_job_type(*std::make_unique<atask::Jobs>(
                                                  c.api_sv, atask::JobsOptions{.storage_dir = c.dir.path()}),
                                              *c.client, "x", ""),
                    atask::OptionsError);
  }
}
