// Metrics: Supervisor::task_metrics() (counts and timing by priority and
// kind) and http::prometheus_text() (what GET /metrics serves), checked
// line by line and by promtool.

#include <atask/http.hpp>

#include <atask/atask.hpp>

#include "fixtures.hpp"
#include "http_client.hpp"
#include "promtool.hpp"

#include <doctest/doctest.h>

#include <boost/asio/awaitable.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace test;
using atask::Priority;
using atask::TaskKind;

namespace {

using clock_type = std::chrono::steady_clock;

int twice(int x) {
  return 2 * x;
}

double seconds(clock_type::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::size_t pi(Priority p) {
  return atask::index(p);
}
std::size_t ki(TaskKind k) {
  return atask::index(k);
}

// -- the text format, parsed -----------------------------------------------------------

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> help, type;  // by family name
  std::vector<Sample> samples;
  std::vector<std::string> errors;  // lines that do not parse
};

// Parses what prometheus_text() returns: "# HELP", "# TYPE" and sample lines
// `name{label="value",...} number` (no timestamps). Label values may hold
// the escapes \\, \" and \n.
Exposition parse(const std::string& text) {
  Exposition ex;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const auto rest = line.substr(7);
      const auto sp = rest.find(' ');
      if (sp == std::string::npos) {
        ex.errors.push_back(line);
        continue;
      }
      (line[2] == 'H' ? ex.help : ex.type)[rest.substr(0, sp)] = rest.substr(sp + 1);
      continue;
    }
    if (line[0] == '#') continue;
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    bool ok = !s.name.empty();
    if (ok && i < line.size() && line[i] == '{') {
      ++i;
      while (ok && i < line.size() && line[i] != '}') {
        const auto eq = line.find("=\"", i);
        if (eq == std::string::npos) {
          ok = false;
          break;
        }
        std::string key = line.substr(i, eq - i), value;
        i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        if (i >= line.size()) {
          ok = false;
          break;
        }
        ++i;  // the closing quote
        s.labels.emplace(std::move(key), std::move(value));
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) ok = false;
      ++i;  // '}'
    }
    if (ok && i < line.size() && line[i] == ' ') {
      const auto num = line.substr(i + 1);
      char* end = nullptr;
      s.value = std::strtod(num.c_str(), &end);
      ok = !num.empty() && end && *end == '\0';
    } else {
      ok = false;
    }
    if (ok)
      ex.samples.push_back(std::move(s));
    else
      ex.errors.push_back(line);
  }
  return ex;
}

// The family a sample belongs to: histogram series drop their suffix.
std::string family_of(const Exposition& ex, const std::string& name) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string sfx = suffix;
    if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
      const auto base = name.substr(0, name.size() - sfx.size());
      if (auto it = ex.type.find(base); it != ex.type.end() && it->second == "histogram") return base;
    }
  }
  return name;
}

// The samples named `name` with exactly these labels.
std::vector<double> values(const Exposition& ex, const std::string& name,
                           const std::map<std::string, std::string>& labels = {}) {
  std::vector<double> out;
  for (const auto& s : ex.samples)
    if (s.name == name && s.labels == labels) out.push_back(s.value);
  return out;
}

// The one sample named `name` with exactly these labels (nullopt: none or several).
std::optional<double> value(const Exposition& ex, const std::string& name,
                            const std::map<std::string, std::string>& labels = {}) {
  auto v = values(ex, name, labels);
  if (v.size() != 1) return std::nullopt;
  return v[0];
}

std::map<std::string, std::string> pk(Priority p, TaskKind k) {
  return {{"priority", std::string(atask::to_string(p))}, {"kind", std::string(atask::to_string(k))}};
}

void require_promtool_clean(const std::string& text) {
  const auto r = check_with_promtool(text);
  if (!r.found)
    FAIL(
        "promtool not found (PATH or $PROMTOOL): install the Debian package 'prometheus' "
        "(scripts/setup.sh should list it)");
  INFO("promtool output:\n", r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.empty());
}

// The metric-name lint (Prometheus' naming rules, as promtool does not
// check them all): snake_case under atask_; _total on counters and only on
// them; histograms named in a base unit (_seconds); and one subsystem
// prefix per subject, never both a singular and a plural (atask_task_* and
// atask_tasks_*).
std::vector<std::string> name_problems(const Exposition& ex) {
  static const std::regex name_rule("atask_[a-z][a-z0-9]*(_[a-z0-9]+)*");
  std::vector<std::string> problems;
  std::set<std::string> subsystems;
  for (const auto& [fam, type] : ex.type) {
    if (!std::regex_match(fam, name_rule)) problems.push_back(fam + ": not snake_case under atask_");
    const bool total = fam.size() > 6 && fam.compare(fam.size() - 6, 6, "_total") == 0;
    if (total != (type == "counter")) problems.push_back(fam + ": _total is for counters, and counters only");
    if (type == "histogram" && !fam.ends_with("_seconds")) problems.push_back(fam + ": not in seconds");
    subsystems.insert(fam.substr(6, fam.find('_', 6) - 6));
  }
  for (const auto& sub : subsystems)
    if (subsystems.count(sub + "s") == 1)
      problems.push_back("both atask_" + sub + "_ and atask_" + sub + "s_");
  return problems;
}

// The checks every scrape must pass: it parses, each family has HELP and
// TYPE, histograms are cumulative and end in +Inf = _count, and the only
// labels are the bounded ones (never a task id or name).
void check_well_formed(const Exposition& ex, const std::string& supervisor_id) {
  INFO("unparsed lines: ", ex.errors.size());
  CHECK(ex.errors.empty());
  REQUIRE(!ex.samples.empty());
  const std::set<std::string> allowed{"priority",    "kind",  "le",           "reason", "worker", "id",
                                      "worker_kind", "state", "status_class", "type",   "status"};
  for (const auto& s : ex.samples) {
    const auto fam = family_of(ex, s.name);
    INFO("sample ", s.name);
    CHECK(fam.rfind("atask_", 0) == 0);
    const auto help = ex.help.find(fam);
    const auto type = ex.type.find(fam);
    REQUIRE(help != ex.help.end());
    CHECK(!help->second.empty());
    REQUIRE(type != ex.type.end());
    for (const auto& [k, v] : s.labels) {
      INFO("label ", k, "=", v);
      CHECK(allowed.count(k) == 1);
      if (k == "id") {
        CHECK(s.name == "atask_supervisor_info");
        CHECK(v == supervisor_id);
      }
      if (k == "priority") CHECK(atask::from_string<atask::Priority>(v).has_value());
      // One label name, one meaning: `kind` is a task's kind everywhere.
      if (k == "kind") CHECK((v == "thread" || v == "coroutine" || v == "process"));
      if (k == "worker_kind") CHECK(atask::from_string<atask::WorkerKind>(v).has_value());
      if (k == "state") CHECK(s.name == "atask_supervisor_state");
      if (k == "status_class") CHECK((v.size() == 3 && v[0] >= '1' && v[0] <= '5' && v.substr(1) == "xx"));
      // A job type is bounded by the types registered; a job's status by JobStatus.
      if (k == "type") CHECK(s.name.rfind("atask_job_", 0) == 0);
      if (k == "status") CHECK(atask::from_string<atask::JobStatus>(v).has_value());
    }
    if (type->second == "counter")
      CHECK((s.name.size() > 6 && s.name.compare(s.name.size() - 6, 6, "_total") == 0));
  }
  for (const auto& p : name_problems(ex)) FAIL_CHECK(p);
  // Histograms: per series, buckets never decrease and +Inf equals _count.
  for (const auto& [fam, type] : ex.type) {
    if (type != "histogram") continue;
    for (const auto& c : ex.samples) {
      if (c.name != fam + "_count") continue;
      double prev = 0;
      std::optional<double> inf;
      for (const auto& b : ex.samples) {
        if (b.name != fam + "_bucket") continue;
        auto labels = b.labels;
        const auto le_it = labels.find("le");
        REQUIRE(le_it != labels.end());
        const auto le = le_it->second;
        labels.erase(le_it);
        if (labels != c.labels) continue;
        CHECK(b.value >= prev);
        prev = b.value;
        if (le == "+Inf") inf = b.value;
      }
      REQUIRE(inf.has_value());
      CHECK(*inf == c.value);
    }
  }
}

}  // namespace

TEST_SUITE("metrics") {
  TEST_CASE("task metrics count every task by priority and kind and time it") {
    StartedSupervisor sv({.id = "metrics", .pool_size = 1, .processes = {.pool_size = 1}});
    Event running, gate;
    OpenOnExit open{&gate};

    // One pool slot: the blocker holds it while a low and a high task queue.
    const auto blocker_submitted = clock_type::now();
    auto blocker = sv.submit({.priority = Priority::normal, .name = "blocker"}, [&] {
      const auto t0 = clock_type::now();
      running.set();
      gate.wait_for();
      return clock_type::now() - t0;
    });
    REQUIRE(running.wait_for());
    auto low = sv.submit({.priority = Priority::low}, [] { return 1; });
    const auto high_submitted = clock_type::now();
    auto high = sv.submit({.priority = Priority::high}, [] { return 2; });
    const auto high_queued_by = clock_type::now();  // its queued_at is no later than this
    CHECK(low.cancel());
    CHECK(low.status() == atask::TaskStatus::canceled);
    CHECK(high.status() == atask::TaskStatus::queued);
    // Not a synchronisation: the duration the histograms must show. The
    // checks use what was measured, not this figure.
    std::this_thread::sleep_for(40ms);
    const auto gate_opened = clock_type::now();
    gate.set();
    const double blocker_ran = seconds(blocker.get_for(patience));
    const double blocker_at_most = seconds(clock_type::now() - blocker_submitted);
    const double high_waited = seconds(gate_opened - high_queued_by);
    CHECK(high.get_for(patience) == 2);
    const double high_at_most = seconds(clock_type::now() - high_submitted);

    auto failing = sv.submit({.priority = Priority::high}, []() -> int { throw std::runtime_error("boom"); });
    REQUIRE(failing.wait_for(patience));
    CHECK_THROWS_AS(failing.get(), std::runtime_error);
    CHECK(sv.submit({.priority = Priority::high}, [] { return 3; }).get_for(patience) == 3);
    auto coro = sv.submit({.priority = Priority::low}, []() -> boost::asio::awaitable<int> { co_return 4; });
    CHECK(coro.get_for(patience) == 4);
    auto proc = sv.submit({.priority = Priority::critical}, atask::process(&twice), 5);
    CHECK(proc.get_for(patience) == 10);
    CHECK(proc.kind() == TaskKind::process);

    // Every task above is final, and a task is booked before its waiters
    // are released: the counts are exact now.
    const auto m = sv.task_metrics();
    atask::TaskMetrics::table submitted{}, started{}, completed{}, failed{}, canceled{};
    submitted[pi(Priority::normal)][ki(TaskKind::thread)] = 1;
    submitted[pi(Priority::low)][ki(TaskKind::thread)] = 1;
    submitted[pi(Priority::high)][ki(TaskKind::thread)] = 3;
    submitted[pi(Priority::low)][ki(TaskKind::coroutine)] = 1;
    submitted[pi(Priority::critical)][ki(TaskKind::process)] = 1;
    started = submitted;
    started[pi(Priority::low)][ki(TaskKind::thread)] = 0;  // canceled while queued
    completed = started;
    completed[pi(Priority::high)][ki(TaskKind::thread)] = 2;
    failed[pi(Priority::high)][ki(TaskKind::thread)] = 1;
    canceled[pi(Priority::low)][ki(TaskKind::thread)] = 1;
    CHECK(m.submitted == submitted);
    CHECK(m.started == started);
    CHECK(m.completed == completed);
    CHECK(m.failed == failed);
    CHECK(m.canceled == canceled);

    // The old per-priority counters still add up.
    const auto tasks = sv.info().tasks;
    CHECK(tasks.submitted[pi(Priority::high)] == 3);
    CHECK(tasks.submitted[pi(Priority::low)] == 2);
    CHECK(tasks.completed[pi(Priority::low)] == 1);
    CHECK(tasks.failed[pi(Priority::high)] == 1);
    CHECK(tasks.canceled[pi(Priority::low)] == 1);
    CHECK(tasks.completed[pi(Priority::critical)] == 1);

    for (Priority p : atask::all_priorities)
      for (TaskKind k : {TaskKind::thread, TaskKind::coroutine, TaskKind::process}) {
        INFO("priority ", atask::to_string(p), " kind ", atask::to_string(k));
        for (const auto* h : {&m.queue_wait[pi(p)][ki(k)], &m.run_time[pi(p)][ki(k)]}) {
          CHECK(h->count == started[pi(p)][ki(k)]);  // every started task has ended
          REQUIRE(h->counts.size() == atask::task_time_buckets.size() + 1);
          CHECK(h->bounds ==
                std::vector<double>(atask::task_time_buckets.begin(), atask::task_time_buckets.end()));
          std::uint64_t sum = 0;
          for (auto c : h->counts) sum += c;
          CHECK(sum == h->count);
          if (h->count == 0) CHECK(h->sum == 0);
        }
      }

    // The blocker ran at least blocker_ran (measured inside it) and at most
    // from its submit to get()'s return (measured outside): its bucket's
    // bound is at or above the first, the bound below it under the second.
    // With the 40 ms wait, that bucket is above 0.025 s.
    static_assert(atask::task_time_buckets[7] == 0.025);
    REQUIRE(blocker_ran > 0.025);
    const auto& run = m.run_time[pi(Priority::normal)][ki(TaskKind::thread)];
    REQUIRE(run.count == 1);
    const auto top_bucket = [](const atask::HistogramSnapshot& h) {
      std::size_t top = 0;
      for (std::size_t b = 0; b < h.counts.size(); ++b)
        if (h.counts[b] > 0) top = b;
      return top;
    };
    const auto rb = top_bucket(run);
    INFO("run-time bucket ", rb, ", ran ", blocker_ran, " s to ", blocker_at_most, " s");
    CHECK(run.counts[rb] == 1);
    CHECK(rb > 7);  // above le=0.025
    if (rb < run.bounds.size()) CHECK(run.bounds[rb] >= blocker_ran);
    if (rb > 0) CHECK(run.bounds[rb - 1] < blocker_at_most);
    CHECK(run.sum >= blocker_ran);
    CHECK(run.sum <= blocker_at_most);
    // The high task waited at least from its submit until the gate opened
    // and at most until get() returned: the longest of the three high waits
    // is in the bucket that says so.
    REQUIRE(high_waited > 0.025);
    const auto& wait = m.queue_wait[pi(Priority::high)][ki(TaskKind::thread)];
    const auto wb = top_bucket(wait);
    INFO("queue-wait bucket ", wb, ", waited ", high_waited, " s to ", high_at_most, " s");
    CHECK(wb > 7);
    if (wb < wait.bounds.size()) CHECK(wait.bounds[wb] >= high_waited);
    if (wb > 0) CHECK(wait.bounds[wb - 1] < high_at_most);
    CHECK(wait.sum >= high_waited);
  }

  TEST_CASE("metrics text has the task and pool and process series and passes promtool") {
    StartedSupervisor sv({.id = "svc-metrics",
                          .pool_size = 3,
                          .reserve_normal = 1,
                          .reserve_high = 2,
                          .processes = {.pool_size = 1}});
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 2; ++i) {
      auto t = sv.submit({.priority = Priority::high, .name = "secret-task-name"}, [] { return 1; });
      t.get_for(patience);
      ids.push_back(t.id());
    }
    auto f = sv.submit({.priority = Priority::low}, []() -> int { throw std::runtime_error("x"); });
    REQUIRE(f.wait_for(patience));
    CHECK_THROWS(f.get());
    auto p = sv.submit({}, atask::process(&twice), 1);
    CHECK(p.get_for(patience) == 2);
    ids.push_back(f.id());
    ids.push_back(p.id());

    const std::string text = atask::http::prometheus_text(sv);
    INFO(text);
    require_promtool_clean(text);
    const auto ex = parse(text);
    check_well_formed(ex, "svc-metrics");
    CHECK(!contains(text, "secret-task-name"));
    std::set<std::string> label_values;
    for (const auto& s : ex.samples)
      for (const auto& [k, v] : s.labels)
        if (k != "le") label_values.insert(v);
    for (auto id : ids) CHECK(label_values.count(std::to_string(id)) == 0);

    CHECK(ex.type.at("atask_task_submitted_total") == "counter");
    CHECK(ex.type.at("atask_task_run_seconds") == "histogram");
    CHECK(ex.type.at("atask_pool_threads") == "gauge");
    CHECK(value(ex, "atask_supervisor_info", {{"id", "svc-metrics"}}) == 1.0);
    // One series per state, always present: a state change moves a 1, it
    // does not end one series and start another.
    CHECK(value(ex, "atask_supervisor_state", {{"state", "running"}}) == 1.0);
    for (const char* st : {"created", "stopping", "stopped"})
      CHECK(value(ex, "atask_supervisor_state", {{"state", st}}) == 0.0);
    CHECK(value(ex, "atask_supervisor_active_tasks") == 0.0);

    // Counters: one series per priority and kind, zeros included.
    CHECK(values(ex, "atask_task_submitted_total").empty());
    for (const char* fam :
         {"atask_task_submitted_total", "atask_task_started_total", "atask_task_completed_total",
          "atask_task_failed_total", "atask_task_canceled_total"}) {
      std::size_t n = 0;
      for (const auto& s : ex.samples) n += s.name == fam;
      CHECK(n == atask::priority_count * atask::task_kind_count);
    }
    CHECK(value(ex, "atask_task_submitted_total", pk(Priority::high, TaskKind::thread)) == 2.0);
    CHECK(value(ex, "atask_task_completed_total", pk(Priority::high, TaskKind::thread)) == 2.0);
    CHECK(value(ex, "atask_task_failed_total", pk(Priority::low, TaskKind::thread)) == 1.0);
    CHECK(value(ex, "atask_task_started_total", pk(Priority::normal, TaskKind::process)) == 1.0);
    CHECK(value(ex, "atask_task_completed_total", pk(Priority::normal, TaskKind::process)) == 1.0);
    CHECK(value(ex, "atask_task_canceled_total", pk(Priority::normal, TaskKind::thread)) == 0.0);

    // Histograms: _count is the number of started tasks.
    CHECK(value(ex, "atask_task_queue_wait_seconds_count", pk(Priority::high, TaskKind::thread)) == 2.0);
    CHECK(value(ex, "atask_task_run_seconds_count", pk(Priority::high, TaskKind::thread)) == 2.0);
    CHECK(value(ex, "atask_task_run_seconds_count", pk(Priority::normal, TaskKind::process)) == 1.0);
    auto inf = pk(Priority::low, TaskKind::thread);
    inf["le"] = "+Inf";
    CHECK(value(ex, "atask_task_run_seconds_bucket", inf) == 1.0);
    auto le60 = pk(Priority::low, TaskKind::thread);
    le60["le"] = "60";
    CHECK(value(ex, "atask_task_run_seconds_bucket", le60) == 1.0);  // a throw takes less than a minute

    // The thread pool.
    CHECK(value(ex, "atask_pool_size") == 3.0);
    CHECK(value(ex, "atask_pool_reserve_normal") == 1.0);
    CHECK(value(ex, "atask_pool_reserve_high") == 2.0);
    CHECK(value(ex, "atask_pool_threads") >= 1.0);
    for (Priority pr : atask::all_priorities) {
      const std::map<std::string, std::string> l{{"priority", std::string(atask::to_string(pr))}};
      // The pool counts a task as running until after its waiters are
      // released: only its presence is certain here.
      CHECK(value(ex, "atask_pool_running_tasks", l).has_value());
      CHECK(value(ex, "atask_process_running_tasks", l).has_value());
      CHECK(value(ex, "atask_pool_queued_tasks", l) == 0.0);
      CHECK(value(ex, "atask_process_queued_tasks", l) == 0.0);
    }

    // The process pool.
    CHECK(value(ex, "atask_process_pool_size") == 1.0);
    CHECK(value(ex, "atask_process_children_spawned_total") >= 1.0);
    for (const char* reason : {"crashed", "killed", "recycled"})
      CHECK(value(ex, "atask_process_child_restarts_total", {{"reason", reason}}) == 0.0);
    CHECK(value(ex, "atask_process_children").has_value());
  }

  TEST_CASE("metrics text without a process pool has no process series") {
    StartedSupervisor sv(options("noproc", 1));
    CHECK(sv.submit({}, [] { return 1; }).get_for(patience) == 1);
    const std::string text = atask::http::prometheus_text(sv);
    INFO(text);
    require_promtool_clean(text);
    const auto ex = parse(text);
    check_well_formed(ex, "noproc");
    for (const auto& s : ex.samples) {
      INFO(s.name);
      CHECK(s.name.rfind("atask_process_", 0) != 0);
      if (auto it = s.labels.find("kind"); it != s.labels.end()) CHECK(it->second != "process");
    }
    CHECK(value(ex, "atask_task_completed_total", pk(Priority::normal, TaskKind::thread)) == 1.0);
  }

  TEST_CASE("worker metrics count an event worker's runs and errors and show whether it is active") {
    StartedSupervisor sv(options("wm"));
    std::atomic<int> calls{0};
    Event third;
    auto w = atask::event_worker(sv,
                                 [&] {
                                   const int n = ++calls;
                                   if (n == 2) throw std::runtime_error("second call fails");
                                   if (n == 3) third.set();
                                 },
                                 {.name = "flusher", .on_error = [](const atask::WorkerError&) {}});
    Event busy, gate;
    OpenOnExit open{&gate};
    auto q = atask::queue_worker<int>(sv,
                                      [&](int) {
                                        busy.set();
                                        gate.wait_for();
                                      },
                                      {.name = "jobs"});  // QueueOptions<int>
    auto idle = atask::event_worker(sv, [] {}, {.name = "idle"});
    REQUIRE(w->start());
    REQUIRE(q->start());
    REQUIRE(idle->start());  // never triggered: it never runs
    const double before =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    w->trigger(atask::TriggerMode::force);
    w->trigger(atask::TriggerMode::force);
    w->trigger(atask::TriggerMode::force);
    REQUIRE(third.wait_for());
    q->put(1);
    REQUIRE(busy.wait_for());
    q->put(2);
    q->put(3);

    auto ex = parse(atask::http::prometheus_text(sv));
    check_well_formed(ex, "wm");
    REQUIRE(w->info().kind == atask::WorkerKind::event);
    const std::string kind = "event";  // the label pins the name
    CHECK(value(ex, "atask_worker_active", {{"worker", "flusher"}}) == 1.0);
    CHECK(value(ex, "atask_worker_active", {{"worker", "jobs"}}) == 1.0);
    CHECK(value(ex, "atask_worker_queue_length", {{"worker", "jobs"}}) == 2.0);
    CHECK(value(ex, "atask_worker_queue_length", {{"worker", "flusher"}}) == 0.0);
    CHECK(value(ex, "atask_worker_errors_total", {{"worker", "flusher"}, {"worker_kind", kind}}) == 1.0);
    // When the last call started, in Unix seconds; no series before a first call.
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    const auto last = value(ex, "atask_worker_last_run_timestamp_seconds", {{"worker", "flusher"}});
    REQUIRE(last.has_value());
    // The worker reads the coarse real-time clock (a tick of a few ms): a
    // second of slack checks that this is the Unix time of that call.
    CHECK(*last >= before - 1.0);
    CHECK(*last <= now + 1.0);
    CHECK(value(ex, "atask_worker_last_run_timestamp_seconds", {{"worker", "jobs"}}).has_value());
    CHECK_FALSE(value(ex, "atask_worker_last_run_timestamp_seconds", {{"worker", "idle"}}).has_value());

    w->stop();  // waits for the running call: its bookkeeping is done
    gate.set();
    q->stop();  // drains 2 and 3
    const std::string text = atask::http::prometheus_text(sv);
    INFO(text);
    require_promtool_clean(text);
    ex = parse(text);
    check_well_formed(ex, "wm");
    CHECK(kind == "event");
    CHECK(value(ex, "atask_worker_runs_total", {{"worker", "flusher"}, {"worker_kind", "event"}}) == 3.0);
    CHECK(value(ex, "atask_worker_errors_total", {{"worker", "flusher"}, {"worker_kind", "event"}}) == 1.0);
    CHECK(value(ex, "atask_worker_active", {{"worker", "flusher"}}) == 0.0);
    CHECK(value(ex, "atask_worker_runs_total", {{"worker", "jobs"}, {"worker_kind", "queue"}}) == 3.0);
    CHECK(value(ex, "atask_worker_errors_total", {{"worker", "jobs"}, {"worker_kind", "queue"}}) == 0.0);
    CHECK(value(ex, "atask_worker_queue_length", {{"worker", "jobs"}}) == 0.0);
    // The workers' runs are pool tasks at their priority (a queue worker may
    // take several items in one task, so not one task per run). stop()
    // waits for the executor call, not for the task around it to be booked:
    // completed may still trail started here.
    const auto worker_tasks = value(ex, "atask_task_started_total", pk(Priority::normal, TaskKind::thread));
    REQUIRE(worker_tasks.has_value());
    CHECK(*worker_tasks >= 2.0);
    CHECK(value(ex, "atask_task_submitted_total", pk(Priority::normal, TaskKind::thread)) >= *worker_tasks);
  }

  TEST_CASE("GET /metrics adds the control plane's own counters and passes promtool and the name lint") {
    atask::Supervisor sv(options("served", 2));
    auto server = atask::http::serve(sv, {.port = 0, .metrics_cache = 0ms});
    sv.start();
    REQUIRE(http_request(server.port(), "GET", "/api/supervisor").status == 200);
    REQUIRE(http_request(server.port(), "GET", "/nope").status == 404);
    const auto m = http_request(server.port(), "GET", "/metrics");
    REQUIRE(m.status == 200);
    INFO(m.body);
    require_promtool_clean(m.body);
    const auto ex = parse(m.body);
    check_well_formed(ex, "served");
    CHECK(ex.type.at("atask_http_requests_total") == "counter");
    CHECK(value(ex, "atask_http_requests_total", {{"status_class", "2xx"}}) >= 1.0);
    CHECK(value(ex, "atask_http_requests_total", {{"status_class", "4xx"}}) == 1.0);
    CHECK(value(ex, "atask_http_requests_total", {{"status_class", "5xx"}}) == 0.0);
    CHECK(value(ex, "atask_http_connections_accepted_total") >= 3.0);
    CHECK(value(ex, "atask_http_connections_refused_total") == 0.0);
    CHECK(value(ex, "atask_http_connections_open") >= 1.0);  // the scrape's own
    CHECK(value(ex, "atask_http_timeouts_total") == 0.0);
    CHECK(value(ex, "atask_http_streams_open") == 0.0);
    CHECK(server.stats().requests_by_class[3] == 1);
    sv.stop();
  }

  TEST_CASE("GET /metrics counts the jobs the server's Jobs holds by type and status") {
    TempDir dir;
    atask::Supervisor sv(options("jobm", 2));
    atask::Jobs jobs(sv, {.storage_dir = dir.path()});
    jobs.add_type("ok", [](atask::JobContext& j) { std::ofstream(j.output_path()) << "x"; });
    jobs.add_type("bad", [](atask::JobContext&) { throw std::runtime_error("no"); });
    jobs.add_type("unused", [](atask::JobContext&) {});
    auto server = atask::http::serve(sv, {.port = 0, .jobs = &jobs, .metrics_cache = 0ms});
    sv.start();
    CHECK(jobs.ensure_run("ok", {{"n", 1}}).wait().status == atask::JobStatus::done);
    CHECK(jobs.ensure_run("ok", {{"n", 2}}).wait().status == atask::JobStatus::done);
    CHECK(jobs.ensure_run("bad").wait().status == atask::JobStatus::failed);
    const auto m = http_request(server.port(), "GET", "/metrics");
    REQUIRE(m.status == 200);
    INFO(m.body);
    require_promtool_clean(m.body);
    const auto ex = parse(m.body);
    check_well_formed(ex, "jobm");
    CHECK(ex.type.at("atask_job_held") == "gauge");
    CHECK(value(ex, "atask_job_held", {{"type", "ok"}, {"status", "done"}}) == 2.0);
    CHECK(value(ex, "atask_job_held", {{"type", "ok"}, {"status", "failed"}}) == 0.0);
    CHECK(value(ex, "atask_job_held", {{"type", "bad"}, {"status", "failed"}}) == 1.0);
    CHECK(value(ex, "atask_job_held", {{"type", "unused"}, {"status", "queued"}}) ==
          0.0);  // a series per type
    // Finished jobs: counters by type and status, run times by type.
    CHECK(ex.type.at("atask_job_finished_total") == "counter");
    CHECK(value(ex, "atask_job_finished_total", {{"type", "ok"}, {"status", "done"}}) == 2.0);
    CHECK(value(ex, "atask_job_finished_total", {{"type", "bad"}, {"status", "failed"}}) == 1.0);
    CHECK(value(ex, "atask_job_finished_total", {{"type", "unused"}, {"status", "done"}}) == 0.0);
    CHECK(ex.type.at("atask_job_run_seconds") == "histogram");
    CHECK(value(ex, "atask_job_run_seconds_count", {{"type", "ok"}}) == 2.0);
    CHECK(value(ex, "atask_job_run_seconds_count", {{"type", "bad"}}) == 1.0);
    CHECK(value(ex, "atask_job_run_seconds_bucket", {{"type", "ok"}, {"le", "+Inf"}}) == 2.0);
    CHECK(value(ex, "atask_job_run_seconds_count", {{"type", "unused"}}) == 0.0);
    CHECK(*value(ex, "atask_job_run_seconds_sum", {{"type", "ok"}}) >= 0.0);
    // They count what finished, not what is held: a job dropped from the
    // history is still counted.
    const auto stats = jobs.finished_stats();
    REQUIRE(stats.size() == 3);
    for (const auto& st : stats)
      if (st.type == "ok") {
        CHECK(st.done == 2);
        CHECK(st.run.count == 2);
        CHECK(st.run.counts.size() == atask::job_time_buckets.size() + 1);
      }
    sv.stop();
  }

  TEST_CASE("the metric-name lint catches a plural prefix beside a singular one") {
    // The lint the tests above rely on must be able to fail: the names this
    // server had before issue 15 (atask_tasks_* beside atask_task_*).
    Exposition ex;
    ex.type["atask_tasks_submitted_total"] = "counter";
    ex.type["atask_task_run_seconds"] = "histogram";
    CHECK(name_problems(ex) == std::vector<std::string>{"both atask_task_ and atask_tasks_"});
    ex.type["atask_worker_runs"] = "counter";
    ex.type["atask_Bad_name_total"] = "gauge";
    CHECK(name_problems(ex).size() == 4);
  }

  TEST_CASE("a scrape within metrics_cache is served the text already built and 0 builds every scrape") {
    atask::Supervisor cached(options("cached", 2));
    auto a = atask::http::serve(cached, {.port = 0, .metrics_cache = std::chrono::hours(1)});
    cached.start();
    atask::Supervisor fresh(options("fresh", 2));
    auto b = atask::http::serve(fresh, {.port = 0, .metrics_cache = 0ms});
    fresh.start();
    const auto first_a = http_request(a.port(), "GET", "/metrics").body;
    const auto first_b = http_request(b.port(), "GET", "/metrics").body;
    REQUIRE(cached.submit({}, [] { return 1; }).get_for(patience) == 1);
    REQUIRE(fresh.submit({}, [] { return 1; }).get_for(patience) == 1);
    REQUIRE(eventually([&] { return cached.info().active_tasks == 0 && fresh.info().active_tasks == 0; }));
    const auto second_a = http_request(a.port(), "GET", "/metrics").body;
    const auto second_b = http_request(b.port(), "GET", "/metrics").body;
    CHECK(second_a == first_a);  // within the hour: the same text, the task not in it
    CHECK(second_b != first_b);
    CHECK(value(parse(second_b), "atask_task_completed_total", pk(Priority::normal, TaskKind::thread)) ==
          1.0);
    CHECK(contains(
        what_of<atask::OptionsError>([&] { (void)atask::http::serve(fresh, {.metrics_cache = -1ms}); }),
        "metrics_cache"));
    cached.stop();
    fresh.stop();
  }

  TEST_CASE("the promtool metrics check catches a family without help and a counter without _total") {
    // The check the tests above rely on must be able to fail.
    const auto r = check_with_promtool("# TYPE atask_bad counter\natask_bad 1\n");
    if (!r.found) FAIL("promtool not found: install the Debian package 'prometheus'");
    CHECK(r.exit_code != 0);
    CHECK(contains(r.output, "no help text"));
    CHECK(contains(r.output, "_total"));
  }
}
