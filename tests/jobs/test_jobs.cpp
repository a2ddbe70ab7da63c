#include <atask/jobs.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <atask/errors.hpp>
#include <atask/supervisor.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using atask::JobContext;
using atask::JobInfo;
using atask::Jobs;
using atask::JobStatus;

using namespace test;

namespace {

// Subscribes to a job and keeps every snapshot its callback saw.
struct Recorder {
  explicit Recorder(const atask::Job& job)
      : sub(job.subscribe([this, j = job] {
          {
            std::lock_guard lk(m);
            seen.push_back(j.info());
          }
          calls.bump();
        })) {}
  std::vector<JobInfo> snapshot() {
    std::lock_guard lk(m);
    return seen;
  }
  std::mutex m;
  std::vector<JobInfo> seen;
  Counter calls;
  atask::Job::Subscription sub;  // last: ends before the members it uses
};

// For executors: wait for a gate and fail the job (never hang) if it stays shut.
void pass(const Event& gate) {
  if (!gate.wait_for()) throw std::runtime_error("test gate was never opened");
}

// Waits (with patience) until the job is finished; the snapshot either way.
JobInfo wait_finished(const atask::Job& job, std::chrono::milliseconds limit = patience) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  JobInfo i = job.info();
  while (!i.finished() && std::chrono::steady_clock::now() < deadline)
    i = job.wait_change(i.version, deadline);
  return i;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// An executor that writes `text` to its output and counts its runs.
atask::JobFn writer(Counter& runs, std::string text = "result") {
  return [&runs, text](JobContext& job) {
    runs.bump();
    std::ofstream(job.output_path()) << text;
  };
}

}  // namespace

TEST_SUITE("jobs") {
  TEST_CASE("a job runs and reports progress in order and leaves its result file") {
    TempDir dir;
    Event entered, release;
    std::atomic<bool> output_ready{false}, saw_running{false};
    std::atomic<std::int64_t> saw_doc{0};
    StartedSupervisor sv(options("jobs1", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    OpenOnExit open{&release};
    jobs.add_type("count", [&](JobContext& job) {
      const auto& out = job.output_path();
      output_ready = fs::exists(out) && fs::file_size(out) == 0 && out.parent_path() == dir.path() &&
                     out.filename().string().starts_with(".tmp-" + job.info().key);
      saw_running = job.info().status == JobStatus::running;
      saw_doc = job.params().at("doc").as_int64();
      entered.set();
      pass(release);
      for (int i = 1; i <= 4; ++i) job.progress(i / 4.0, "step " + std::to_string(i));
      std::ofstream(out) << "the result";
    });
    CHECK(jobs.has_type("count"));
    CHECK(jobs.types() == std::vector<std::string>{"count"});

    auto job = jobs.ensure_run("count", {{"doc", 1234}});
    CHECK(job.id() == 1);
    REQUIRE(entered.wait_for());
    Recorder rec(job);
    auto& calls = rec.calls;
    release.set();
    const auto done = wait_finished(job);
    // Waiters wake before subscribers are called: wait for the last call.
    REQUIRE(calls.wait_for_at_least(5));

    REQUIRE(done.status == JobStatus::done);
    CHECK(output_ready.load());
    CHECK(saw_running.load());
    CHECK(saw_doc.load() == 1234);
    CHECK(done.fraction == 1.0);
    CHECK(done.error.empty());
    CHECK_FALSE(done.from_storage);
    CHECK(done.type == "count");
    CHECK(done.key == Jobs::key_of("count", {{"doc", 1234}}));
    CHECK(done.result_path == dir.path() / (done.key + ".result"));
    CHECK(slurp(done.result_path) == "the result");
    CHECK(done.created_at.has_value());
    CHECK(done.started_at.has_value());
    CHECK(done.finished_at.has_value());
    CHECK(names_in(dir.path()) == std::set<std::string>{done.key + ".result", done.key + ".json"});
    const auto side = json::parse(slurp(dir.path() / (done.key + ".json")));
    CHECK(side.at("type") == "count");
    CHECK(side.at("params") == json::object{{"doc", 1234}});

    const auto seen = rec.snapshot();
    REQUIRE(seen.size() == 5);
    for (int i = 0; i < 4; ++i) {
      CHECK(seen[i].status == JobStatus::running);
      CHECK(seen[i].fraction == doctest::Approx((i + 1) / 4.0));
      CHECK(seen[i].message == "step " + std::to_string(i + 1));
    }
    CHECK(seen[4].status == JobStatus::done);
    for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].version == seen[i - 1].version + 1);
    CHECK(to_string(JobStatus::queued) == "queued");
    CHECK(to_string(JobStatus::running) == "running");
    CHECK(to_string(JobStatus::done) == "done");
    CHECK(to_string(JobStatus::failed) == "failed");
  }

  TEST_CASE("identical params in another key order join the same job") {
    TempDir dir;
    Event entered, release;
    Counter runs;
    StartedSupervisor sv(options("jobs2", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    OpenOnExit open{&release};
    jobs.add_type("t", [&](JobContext& job) {
      runs.bump();
      entered.set();
      pass(release);
      std::ofstream(job.output_path()) << "x";
    });
    auto a = jobs.ensure_run("t", {{"a", 1}, {"b", {{"x", 1}, {"y", json::array{1, 2}}}}});
    REQUIRE(entered.wait_for());
    auto b = jobs.ensure_run("t", {{"b", {{"y", json::array{1, 2}}, {"x", 1}}}, {"a", 1}});
    CHECK(a.id() == b.id());
    CHECK(a.info().status == JobStatus::running);
    release.set();
    REQUIRE(wait_finished(a).status == JobStatus::done);
    auto c = jobs.ensure_run("t", {{"a", 1}, {"b", {{"x", 1}, {"y", json::array{1, 2}}}}});
    CHECK(c.id() == a.id());
    CHECK(c.info().status == JobStatus::done);
    CHECK_FALSE(c.info().from_storage);
    CHECK(runs.value() == 1);
    // Other params: another job.
    auto d = jobs.ensure_run("t", {{"a", 2}});
    CHECK(d.id() != a.id());
    REQUIRE(wait_finished(d).status == JobStatus::done);
    CHECK(runs.value() == 2);
  }

  TEST_CASE("concurrent ensure_run calls for the same params create exactly one job") {
    TempDir dir;
    Counter runs;
    StartedSupervisor sv(options("jobs3", 4));
    Jobs jobs(sv, {.storage_dir = dir.path(), .max_running = 2});
    jobs.add_type("t", writer(runs));
    constexpr int threads = 8;
    for (int round = 0; round < 10; ++round) {
      Counter go;  // the threads call at once
      std::vector<std::future<std::uint64_t>> ids;
      for (int t = 0; t < threads; ++t)
        ids.push_back(std::async(std::launch::async, [&] {
          go.bump();
          go.wait_for_at_least(threads);
          auto j = jobs.ensure_run("t", {{"round", round}, {"k", "v"}});
          return j.id();
        }));
      std::set<std::uint64_t> distinct;
      for (auto& f : ids) distinct.insert(wait_or_abort(f, "Jobs::ensure_run()"));
      REQUIRE(distinct.size() == 1);
      auto j = jobs.find(*distinct.begin());
      REQUIRE(j);
      CHECK(wait_finished(*j).status == JobStatus::done);
    }
    CHECK(runs.value() == 10);
    CHECK(jobs.list().size() == 10);
  }

  TEST_CASE("a done job is found in storage by a new Jobs object without running again") {
    TempDir dir;
    Counter runs1, runs2;
    StartedSupervisor sv(options("jobs4", 4));
    const json::object params{{"doc", 7}, {"server", "https://example.org"}};
    fs::path first_result;
    {
      Jobs jobs(sv, {.storage_dir = dir.path()});
      jobs.add_type("t", writer(runs1, "stored"));
      auto j = jobs.ensure_run("t", params);
      const auto i = wait_finished(j);
      REQUIRE(i.status == JobStatus::done);
      first_result = i.result_path;
    }
    Jobs jobs(sv, {.storage_dir = dir.path()});
    jobs.add_type("t", writer(runs2));
    // Key order does not matter here either.
    auto j = jobs.ensure_run("t", {{"server", "https://example.org"}, {"doc", 7}});
    const auto i = j.info();
    CHECK(i.status == JobStatus::done);
    CHECK(i.from_storage);
    CHECK(i.fraction == 1.0);
    CHECK(i.result_path == first_result);
    CHECK(i.finished_at.has_value());
    CHECK(slurp(i.result_path) == "stored");
    CHECK(runs1.value() == 1);
    CHECK(runs2.value() == 0);
    // Remembered now: the same job again, findable by id, listed.
    CHECK(jobs.ensure_run("t", params).id() == j.id());
    CHECK(jobs.find(j.id()));
    REQUIRE(jobs.list().size() == 1);
    CHECK(jobs.list()[0].from_storage);
    // wait() returns at once.
    CHECK(call_within("Job::wait()", [&] { return j.wait(); }).status == JobStatus::done);
  }

  TEST_CASE("a stored result is returned even when the supervisor is not running") {
    TempDir dir;
    Counter runs;
    {
      StartedSupervisor sv(options("jobs5a", 4));
      Jobs jobs(sv, {.storage_dir = dir.path()});
      jobs.add_type("t", writer(runs));
      REQUIRE(wait_finished(jobs.ensure_run("t", {{"a", 1}})).status == JobStatus::done);
    }
    atask::Supervisor sv(options("jobs5b", 4));  // never started
    Jobs jobs(sv, {.storage_dir = dir.path()});
    jobs.add_type("t", writer(runs));
    CHECK(jobs.ensure_run("t", {{"a", 1}}).info().from_storage);
    CHECK_THROWS_AS(jobs.ensure_run("t", {{"a", 2}}), atask::LifecycleError);
    CHECK(contains(what_of<atask::LifecycleError>([&] { jobs.ensure_run("t", {{"a", 3}}); }), "ensure_run"));
    CHECK(runs.value() == 1);
  }

  TEST_CASE("a tampered or missing sidecar is not trusted and the job runs again") {
    TempDir dir;
    Counter runs;
    StartedSupervisor sv(options("jobs6", 4));
    const json::object params{{"doc", 1}};
    const auto key = Jobs::key_of("t", params);
    const auto side = dir.path() / (key + ".json");
    const auto result = dir.path() / (key + ".result");
    {
      Jobs jobs(sv, {.storage_dir = dir.path()});
      jobs.add_type("t", writer(runs, "genuine"));
      REQUIRE(wait_finished(jobs.ensure_run("t", params)).status == JobStatus::done);
    }
    REQUIRE(fs::exists(side));
    const std::vector<std::string> bad_sidecars = {
        R"({"type":"t","params":{"doc":2}})",  // other params (a collision)
        R"({"type":"u","params":{"doc":1}})",  // other type
        R"({"type":"t"})",                     // no params
        "not json at all",                     //
        "",                                    // empty
    };
    int expected_runs = 1;
    for (const auto& bad : bad_sidecars) {
      CAPTURE(bad);
      spit(result, "forged");
      spit(side, bad);
      Jobs jobs(sv, {.storage_dir = dir.path()});
      jobs.add_type("t", writer(runs, "genuine"));
      auto j = jobs.ensure_run("t", params);
      const auto i = wait_finished(j);
      REQUIRE(i.status == JobStatus::done);
      CHECK_FALSE(i.from_storage);
      CHECK(runs.value() == ++expected_runs);
      CHECK(slurp(result) == "genuine");
      CHECK(json::parse(slurp(side)) == json::parse(R"({"type":"t","params":{"doc":1}})"));
    }
    // A missing sidecar.
    fs::remove(side);
    Jobs jobs(sv, {.storage_dir = dir.path()});
    jobs.add_type("t", writer(runs));
    CHECK_FALSE(wait_finished(jobs.ensure_run("t", params)).from_storage);
    CHECK(runs.value() == ++expected_runs);
  }

  TEST_CASE("a failing executor ends its job failed and the next ensure_run runs it again") {
    TempDir dir;
    Counter runs;
    std::mutex m;
    std::vector<fs::path> outputs;
    StartedSupervisor sv(options("jobs7", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    jobs.add_type("flaky", [&](JobContext& job) {
      {
        std::lock_guard lk(m);
        outputs.push_back(job.output_path());
      }
      std::ofstream(job.output_path()) << "partial";
      job.progress(0.5, "half");
      const int n = runs.bump();
      if (n == 1) throw std::runtime_error("boom: disk on fire");
      if (n == 2) throw 42;
      std::ofstream(job.output_path()) << "ok";
    });
    auto j1 = jobs.ensure_run("flaky", {{"p", 1}});
    const auto f1 = wait_finished(j1);
    REQUIRE(f1.status == JobStatus::failed);
    CHECK(f1.error == "boom: disk on fire");
    CHECK(f1.result_path.empty());
    CHECK(f1.finished_at.has_value());
    CHECK(names_in(dir.path()).empty());  // the temp file is gone

    auto j2 = jobs.ensure_run("flaky", {{"p", 1}});
    CHECK(j2.id() != j1.id());
    const auto f2 = wait_finished(j2);
    REQUIRE(f2.status == JobStatus::failed);
    CHECK(contains(f2.error, "not a std::exception"));
    CHECK(names_in(dir.path()).empty());

    auto j3 = jobs.ensure_run("flaky", {{"p", 1}});
    const auto f3 = wait_finished(j3);
    REQUIRE(f3.status == JobStatus::done);
    CHECK(slurp(f3.result_path) == "ok");
    CHECK(runs.value() == 3);
    {
      std::lock_guard lk(m);
      REQUIRE(outputs.size() == 3);
      CHECK(outputs[0] != outputs[1]);
      for (const auto& o : outputs) CHECK_FALSE(fs::exists(o));
    }
    // Failed jobs stay in the history.
    const auto l = jobs.list();
    REQUIRE(l.size() == 3);
    CHECK(l[0].status == JobStatus::failed);
    CHECK(l[1].status == JobStatus::failed);
    CHECK(l[2].status == JobStatus::done);
    CHECK(jobs.find(j1.id())->info().error == "boom: disk on fire");
  }

  TEST_CASE("no more than max_running executors run at once") {
    TempDir dir;
    Event release;
    Counter entered;
    std::atomic<int> now{0}, peak{0};
    StartedSupervisor sv(options("jobs8", 6));
    Jobs jobs(sv, {.storage_dir = dir.path(), .max_running = 2});
    OpenOnExit open{&release};
    jobs.add_type("t", [&](JobContext& job) {
      const int n = ++now;
      int p = peak.load();
      while (n > p && !peak.compare_exchange_weak(p, n)) {
      }
      entered.bump();
      pass(release);
      --now;
      std::ofstream(job.output_path()) << "x";
    });
    std::vector<atask::Job> all;
    for (int i = 0; i < 6; ++i) all.push_back(jobs.ensure_run("t", {{"i", i}}));
    REQUIRE(entered.wait_for_at_least(2));
    // Only two pool tasks exist: the other jobs wait inside Jobs, not in the pool.
    const auto tasks = sv.tasks();
    CHECK(std::count_if(tasks.begin(), tasks.end(),
                        [](const atask::TaskInfo& t) { return t.name == "job:t"; }) == 2);
    const auto l = jobs.list();
    REQUIRE(l.size() == 6);
    CHECK(std::count_if(l.begin(), l.end(),
                        [](const JobInfo& i) { return i.status == JobStatus::running; }) == 2);
    CHECK(std::count_if(l.begin(), l.end(), [](const JobInfo& i) { return i.status == JobStatus::queued; }) ==
          4);
    CHECK_FALSE(entered.wait_for_at_least(3, 50ms));  // and none of them starts while the gate is shut
    release.set();
    for (auto& j : all) CHECK(wait_finished(j).status == JobStatus::done);
    CHECK(entered.value() == 6);
    CHECK(peak.load() == 2);
  }

  TEST_CASE("queued jobs start in the order they were queued") {
    TempDir dir;
    Event entered, release;
    std::mutex m;
    std::vector<std::int64_t> order;
    StartedSupervisor sv(options("jobs9", 4));
    Jobs jobs(sv, {.storage_dir = dir.path(), .max_running = 1});
    OpenOnExit open{&release};
    jobs.add_type("t", [&](JobContext& job) {
      const auto i = job.params().at("i").as_int64();
      {
        std::lock_guard lk(m);
        order.push_back(i);
      }
      if (i == 0) {
        entered.set();
        pass(release);
      }
      std::ofstream(job.output_path()) << i;
    });
    std::vector<atask::Job> all;
    all.push_back(jobs.ensure_run("t", {{"i", 0}}));
    REQUIRE(entered.wait_for());
    for (int i : {5, 3, 9, 1, 7}) all.push_back(jobs.ensure_run("t", {{"i", i}}));
    for (std::size_t k = 1; k < all.size(); ++k) CHECK(all[k].info().status == JobStatus::queued);
    release.set();
    for (auto& j : all) CHECK(wait_finished(j).status == JobStatus::done);
    std::lock_guard lk(m);
    CHECK(order == std::vector<std::int64_t>{0, 5, 3, 9, 1, 7});
  }

  TEST_CASE("wait_change wakes up on progress and times out when nothing changes") {
    TempDir dir;
    Event entered, half, release;
    StartedSupervisor sv(options("jobs10", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    OpenOnExit open{&half, &release};
    jobs.add_type("t", [&](JobContext& job) {
      entered.set();
      pass(half);
      job.progress(0.5, "half");
      pass(release);
      std::ofstream(job.output_path()) << "x";
    });
    auto j = jobs.ensure_run("t");
    REQUIRE(entered.wait_for());
    const auto before = j.info();
    REQUIRE(before.status == JobStatus::running);
    // Nothing changes while the gate is shut: the wait runs out.
    const auto same = j.wait_change(before.version, std::chrono::steady_clock::now() + 20ms);
    CHECK(same.version == before.version);
    auto later = std::async(std::launch::async, [&] {
      return j.wait_change(before.version, std::chrono::steady_clock::now() + patience);
    });
    half.set();
    const auto after = wait_or_abort(later, "Job::wait_change()");
    CHECK(after.version == before.version + 1);
    CHECK(after.fraction == 0.5);
    CHECK(after.message == "half");
    release.set();
    CHECK(call_within("Job::wait()", [&] { return j.wait(); }).status == JobStatus::done);
  }

  TEST_CASE("a subscriber is called on changes and not after its Subscription is destroyed") {
    TempDir dir;
    Event entered, step1, step2;
    StartedSupervisor sv(options("jobs11", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    OpenOnExit open{&step1, &step2};
    jobs.add_type("t", [&](JobContext& job) {
      entered.set();
      pass(step1);
      job.progress(0.2, "one");
      pass(step2);
      job.progress(0.4, "two");
      std::ofstream(job.output_path()) << "x";
    });
    auto j = jobs.ensure_run("t");
    REQUIRE(entered.wait_for());
    Counter calls;
    std::atomic<bool> on_job_thread{true};
    const auto test_thread = std::this_thread::get_id();
    auto sub = j.subscribe([&] {
      if (std::this_thread::get_id() == test_thread) on_job_thread = false;
      calls.bump();
    });
    CHECK(static_cast<bool>(sub));
    step1.set();
    REQUIRE(calls.wait_for_at_least(1));
    sub = atask::Job::Subscription{};  // ends it
    CHECK_FALSE(static_cast<bool>(sub));
    step2.set();
    REQUIRE(wait_finished(j).status == JobStatus::done);
    CHECK(calls.value() == 1);
    CHECK(on_job_thread.load());
  }

  TEST_CASE("destroying a Subscription waits for its callback in progress") {
    TempDir dir;
    Event entered, go, in_callback, leave_callback;
    StartedSupervisor sv(options("jobs12", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    OpenOnExit open{&go, &leave_callback};
    jobs.add_type("t", [&](JobContext& job) {
      entered.set();
      pass(go);
      job.progress(0.5);
      std::ofstream(job.output_path()) << "x";
    });
    auto j = jobs.ensure_run("t");
    REQUIRE(entered.wait_for());
    std::atomic<bool> callback_returned{false};
    auto sub = std::make_unique<atask::Job::Subscription>(j.subscribe([&] {
      if (in_callback.is_set()) return;  // the first call only
      in_callback.set();
      leave_callback.wait_for();
      callback_returned = true;
    }));
    go.set();
    REQUIRE(in_callback.wait_for());
    auto destroyed = std::async(std::launch::async, [&] {
      sub.reset();
      return callback_returned.load();
    });
    // Still inside the callback: the destructor must not have returned.
    CHECK(destroyed.wait_for(50ms) == std::future_status::timeout);
    leave_callback.set();
    CHECK(wait_or_abort(destroyed, "destroying a Subscription"));
    CHECK(wait_finished(j).status == JobStatus::done);
  }

  TEST_CASE("a Subscription destroyed from inside its own callback does not deadlock") {
    TempDir dir;
    Event entered, go;
    StartedSupervisor sv(options("jobs13", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    OpenOnExit open{&go};
    jobs.add_type("t", [&](JobContext& job) {
      entered.set();
      pass(go);
      job.progress(0.25);
      job.progress(0.5);
      std::ofstream(job.output_path()) << "x";
    });
    auto j = jobs.ensure_run("t");
    REQUIRE(entered.wait_for());
    std::atomic<int> calls{0};
    std::optional<atask::Job::Subscription> sub;
    sub = j.subscribe([&] {
      ++calls;
      sub.reset();
    });
    go.set();
    REQUIRE(wait_finished(j).status == JobStatus::done);
    CHECK(calls.load() == 1);
  }

  TEST_CASE("progress clamps to the unit interval and refuses NaN") {
    TempDir dir;
    Event entered, go;
    std::atomic<bool> nan_refused{false};
    StartedSupervisor sv(options("jobs14", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    OpenOnExit open{&go};
    jobs.add_type("t", [&](JobContext& job) {
      entered.set();
      pass(go);
      try {
        job.progress(std::numeric_limits<double>::quiet_NaN(), "nan");
      } catch (const atask::OptionsError&) {
        nan_refused = true;
      }
      job.progress(5.0, "over");
      job.progress(-3.0, "under");
      std::ofstream(job.output_path()) << "x";
    });
    auto j = jobs.ensure_run("t");
    REQUIRE(entered.wait_for());
    Recorder rec(j);
    auto& calls = rec.calls;
    go.set();
    REQUIRE(wait_finished(j).status == JobStatus::done);
    REQUIRE(calls.wait_for_at_least(3));
    CHECK(nan_refused.load());
    const auto seen = rec.snapshot();
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].fraction == 1.0);
    CHECK(seen[0].message == "over");
    CHECK(seen[1].fraction == 0.0);
    CHECK(seen[1].message == "under");
    CHECK(seen[2].status == JobStatus::done);
  }

  TEST_CASE("unknown types and bad options and bad type names are refused") {
    TempDir dir;
    StartedSupervisor sv(options("jobs15", 4));
    CHECK_THROWS_AS(Jobs(sv, {.storage_dir = {}}), atask::OptionsError);
    CHECK_THROWS_AS(Jobs(sv, {.storage_dir = dir.path(), .max_running = 0}), atask::OptionsError);
    const auto file = dir.path() / "a-file";
    spit(file, "x");
    CHECK(contains(what_of<atask::OptionsError>([&] { Jobs(sv, {.storage_dir = file / "sub"}); }),
                   "storage_dir"));
    CHECK_THROWS_AS(Jobs(sv, {.storage_dir = file}), atask::OptionsError);

    const auto store = dir.path() / "new" / "nested";  // created on demand
    Jobs jobs(sv, {.storage_dir = store});
    CHECK(fs::is_directory(store));
    const atask::JobFn fn = [](JobContext&) {};
    for (const char* bad : {"", "a b", "../x", "a/b", "caf\xc3\xa9", "x\n", "semi;colon"}) {
      CAPTURE(bad);
      CHECK_THROWS_AS(jobs.add_type(bad, fn), atask::OptionsError);
    }
    CHECK_NOTHROW(jobs.add_type("Good.name-1_x", fn));
    CHECK(contains(what_of<atask::OptionsError>([&] { jobs.add_type("Good.name-1_x", fn); }), "already"));
    CHECK_THROWS_AS(jobs.add_type("empty", atask::JobFn{}), atask::OptionsError);
    CHECK_FALSE(jobs.has_type("empty"));
    CHECK(contains(what_of<atask::NotFoundError>([&] { jobs.ensure_run("nope"); }), "nope"));
    CHECK_FALSE(jobs.find(12345).has_value());
    CHECK(jobs.list().empty());
    CHECK(jobs.options().max_running == 2);
  }

  TEST_CASE("key_of is stable and independent of key order and depends on the type") {
    // sha256("index\n{\"doc\":1234}")
    CHECK(Jobs::key_of("index", {{"doc", 1234}}) ==
          "e44f4f221facb374470cda7984383cfbce3b3f709d4fd79ac4ac4f634fb7ee8e");
    const json::object a{{"b", json::array{json::object{{"y", 1}, {"x", 2}}, 3}}, {"a", "s"}};
    const json::object b{{"a", "s"}, {"b", json::array{json::object{{"x", 2}, {"y", 1}}, 3}}};
    const auto k = Jobs::key_of("t", a);
    CHECK(k == Jobs::key_of("t", b));
    CHECK(k == Jobs::key_of("t", a));
    CHECK(k.size() == 64);
    CHECK(std::all_of(k.begin(), k.end(),
                      [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }));
    CHECK(k != Jobs::key_of("u", a));
    CHECK(Jobs::key_of("t", {{"v", json::array{1, 2}}}) != Jobs::key_of("t", {{"v", json::array{2, 1}}}));
    CHECK(Jobs::key_of("t", {{"v", 1}}) != Jobs::key_of("t", {{"v", "1"}}));
    CHECK(Jobs::key_of("t", {}) != Jobs::key_of("t", {{"", nullptr}}));
  }

  TEST_CASE("storage file names are hex digests even for hostile params") {
    TempDir dir;
    Counter runs;
    const auto store = dir.path() / "store";
    StartedSupervisor sv(options("jobs16", 4));
    Jobs jobs(sv, {.storage_dir = store});
    jobs.add_type("x", writer(runs));
    const json::object hostile{{"path", "../../etc/passwd"}, {"name", "a/b\\c\n.result"}, {"../k", "/abs"}};
    const auto i = wait_finished(jobs.ensure_run("x", hostile));
    REQUIRE(i.status == JobStatus::done);
    CHECK(i.result_path.parent_path() == store);
    const std::regex hexname("^[0-9a-f]{64}\\.(result|json)$");
    const auto names = names_in(store);
    CHECK(names.size() == 2);
    for (const auto& n : names) {
      CAPTURE(n);
      CHECK(std::regex_match(n, hexname));
    }
    CHECK(names_in(dir.path()) == std::set<std::string>{"store"});
  }

  TEST_CASE("the history is bounded and a done job that left it is found in storage") {
    TempDir dir;
    Counter runs;
    StartedSupervisor sv(options("jobs17", 4));
    Jobs jobs(sv, {.storage_dir = dir.path(), .max_running = 1, .history_size = 2});
    jobs.add_type("t", writer(runs));
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 4; ++i) {
      auto j = jobs.ensure_run("t", {{"i", i}});
      REQUIRE(wait_finished(j).status == JobStatus::done);
      ids.push_back(j.id());
    }
    const auto l = jobs.list();
    REQUIRE(l.size() == 2);
    CHECK(l[0].id == ids[2]);
    CHECK(l[1].id == ids[3]);
    CHECK_FALSE(jobs.find(ids[0]).has_value());
    auto again = jobs.ensure_run("t", {{"i", 0}});
    CHECK(again.id() != ids[0]);
    CHECK(again.info().from_storage);
    CHECK(runs.value() == 4);
    // A result removed behind the Jobs' back: the job runs again.
    fs::remove(jobs.find(ids[3])->info().result_path);
    auto rerun = jobs.ensure_run("t", {{"i", 3}});
    CHECK(rerun.id() != ids[3]);
    CHECK(wait_finished(rerun).status == JobStatus::done);
    CHECK(runs.value() == 5);
  }

  TEST_CASE("destroying Jobs stops a running job and cancels a queued one") {
    TempDir dir;
    Counter runs;
    Event started;
    StartedSupervisor sv(options("jobs18", 4));
    std::optional<Jobs> jobs;
    jobs.emplace(sv, atask::JobsOptions{.storage_dir = dir.path(), .max_running = 1});
    jobs->add_type("wait_stop", [&](JobContext& job) {
      runs.bump();
      started.set();
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lk(m);
      if (!cv.wait_for(lk, job.stop_token(), patience, [] { return false; }) && job.stop_requested())
        throw std::runtime_error("stopped on request");
      throw std::runtime_error("never asked to stop");
    });
    auto running = jobs->ensure_run("wait_stop", {{"n", 1}});
    REQUIRE(started.wait_for());
    auto queued = jobs->ensure_run("wait_stop", {{"n", 2}});
    CHECK(queued.info().status == JobStatus::queued);
    auto destroyed = std::async(std::launch::async, [&] { jobs.reset(); });
    wait_or_abort(destroyed, "destroying the Jobs");
    // The handles outlive the Jobs object.
    const auto r = running.info();
    CHECK(r.status == JobStatus::failed);
    CHECK(r.error == "stopped on request");
    const auto q = queued.info();
    CHECK(q.status == JobStatus::failed);
    CHECK(q.error == "canceled: Jobs destroyed");
    CHECK(runs.value() == 1);
    CHECK(names_in(dir.path()).empty());
  }

  TEST_CASE("ensure_run throws NotFoundError before LifecycleError") {
    TempDir dir;
    atask::Supervisor sv(options("jobs19", 4));
    Jobs jobs(sv, {.storage_dir = dir.path()});
    jobs.add_type("t", [](JobContext&) {});
    CHECK_THROWS_AS(jobs.ensure_run("missing"), atask::NotFoundError);
    CHECK_THROWS_AS(jobs.ensure_run("t"), atask::LifecycleError);
    CHECK(jobs.list().empty());
  }

  TEST_CASE("a Jobs that outlives its supervisor does not dangle: ensure_run throws LifecycleError") {
    TempDir dir;
    auto sv = std::make_unique<StartedSupervisor>(options("jobs20", 2));
    Jobs jobs(*sv, {.storage_dir = dir.path()});
    jobs.add_type("t", [](JobContext&) {});
    const auto done = wait_finished(jobs.ensure_run("t", {{"a", 1}}));
    REQUIRE(done.status == JobStatus::done);
    sv.reset();  // the supervisor goes first (against the rule, but it must not dangle)
    CHECK(contains(what_of<atask::LifecycleError>([&] {
                     (void)jobs.ensure_run("t", {{"a", 2}});
                   }),
                   "is gone"));
    // What needs no supervisor still works: the done job is found in storage.
    CHECK(jobs.ensure_run("t", {{"a", 1}}).info().status == JobStatus::done);
    CHECK(jobs.list().size() >= 1);
  }
}
