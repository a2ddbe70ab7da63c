// GET /metrics: the supervisor's state in the Prometheus text format.
//
// Every call builds a fresh prometheus::Registry from snapshots (info(),
// task_metrics(), workers()) and serializes it: the supervisor keeps its
// own counters (relaxed atomics and counters under locks it takes anyway),
// so the hot path never touches prometheus-cpp and no lock is held while
// the text is built. A scrape allocates per series: with 1,000 workers
// (about 4,400 series) it takes about 9 ms, which is why the server builds
// it on a pool thread rather than on the loop (see api.cpp).
//
// Labels have bounded values only: priority, kind, reason, le, the
// supervisor's id and state, and worker names (chosen by the program, few).
// Never a task id or a task name.

#include <atask/http/server.hpp>
#include <atask/supervisor/supervisor.hpp>
#include <atask/core/worker_info.hpp>
#include <atask/jobs/jobs.hpp>
#include <atask/util/enum_names.hpp>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace atask::http {

namespace {

constexpr std::array<TaskKind, task_kind_count> all_kinds{TaskKind::thread, TaskKind::coroutine,
                                                          TaskKind::process};

std::string label(Priority p) {
  return std::string(to_string(p));
}
std::string label(TaskKind k) {
  return std::string(to_string(k));
}

// Builds the families of one scrape. Family references stay valid for the
// registry's life.
class Scrape {
 public:
  prometheus::Family<prometheus::Counter>& counter(const std::string& name, const std::string& help) {
    return prometheus::BuildCounter().Name(name).Help(help).Register(registry_);
  }
  prometheus::Family<prometheus::Gauge>& gauge(const std::string& name, const std::string& help) {
    return prometheus::BuildGauge().Name(name).Help(help).Register(registry_);
  }
  prometheus::Family<prometheus::Histogram>& histogram(const std::string& name, const std::string& help) {
    return prometheus::BuildHistogram().Name(name).Help(help).Register(registry_);
  }
  // A gauge without labels.
  void value(const std::string& name, const std::string& help, double v) { gauge(name, help).Add({}).Set(v); }

  std::string text() const { return prometheus::TextSerializer().Serialize(registry_.Collect()); }

 private:
  prometheus::Registry registry_;
};

void add_counts(prometheus::Family<prometheus::Counter>& f, const TaskMetrics::table& t,
                bool with_processes) {
  for (Priority p : all_priorities)
    for (TaskKind k : all_kinds) {
      if (k == TaskKind::process && !with_processes) continue;
      f.Add({{"priority", label(p)}, {"kind", label(k)}})
          .Increment(static_cast<double>(t[index(p)][index(k)]));
    }
}

void add_histograms(prometheus::Family<prometheus::Histogram>& f, const TaskMetrics::histograms& hs,
                    bool with_processes) {
  const prometheus::Histogram::BucketBoundaries bounds(task_time_buckets.begin(), task_time_buckets.end());
  for (Priority p : all_priorities)
    for (TaskKind k : all_kinds) {
      if (k == TaskKind::process && !with_processes) continue;
      const HistogramSnapshot& h = hs[index(p)][index(k)];
      std::vector<double> increments(h.counts.begin(), h.counts.end());
      increments.resize(bounds.size() + 1);  // ObserveMultiple wants exactly one per bucket
      f.Add({{"priority", label(p)}, {"kind", label(k)}}, bounds).ObserveMultiple(increments, h.sum);
    }
}

void add_tasks(Scrape& s, const TaskMetrics& m, bool with_processes) {
  add_counts(
      s.counter("atask_task_submitted_total", "Tasks submitted (queued or delayed), by priority and kind."),
      m.submitted, with_processes);
  add_counts(s.counter("atask_task_started_total", "Tasks that began to run, by priority and kind."),
             m.started, with_processes);
  add_counts(s.counter("atask_task_completed_total", "Tasks that ended with a result, by priority and kind."),
             m.completed, with_processes);
  add_counts(
      s.counter("atask_task_failed_total",
                "Tasks that ended with an error (or were abandoned by a cold shutdown), by priority and "
                "kind."),
      m.failed, with_processes);
  add_counts(s.counter("atask_task_canceled_total",
                       "Tasks canceled before they started or stopped while running, by priority and kind."),
             m.canceled, with_processes);
  add_histograms(
      s.histogram("atask_task_queue_wait_seconds",
                  "Time from queued to started, observed when a task starts, by priority and kind."),
      m.queue_wait, with_processes);
  add_histograms(
      s.histogram("atask_task_run_seconds",
                  "Time from started to finished, observed when a started task ends, by priority and "
                  "kind."),
      m.run_time, with_processes);
}

void add_pool(Scrape& s, const PoolInfo& p) {
  s.value("atask_pool_threads", "Live threads of the priority thread pool.", p.threads);
  s.value("atask_pool_idle_threads", "Thread-pool threads not running a task.", p.idle_threads);
  auto& running = s.gauge("atask_pool_running_tasks", "Tasks running on the thread pool, by priority.");
  auto& queued = s.gauge("atask_pool_queued_tasks", "Tasks waiting for a thread-pool slot, by priority.");
  for (Priority pr : all_priorities) {
    running.Add({{"priority", label(pr)}}).Set(p.running[index(pr)]);
    queued.Add({{"priority", label(pr)}}).Set(p.queued[index(pr)]);
  }
  s.value("atask_pool_size", "Thread-pool slots every priority may use (0 = unlimited).", p.limits.pool_size);
  s.value("atask_pool_reserve_normal", "Extra thread-pool slots for normal, high and critical tasks.",
          p.limits.reserve_normal);
  s.value("atask_pool_reserve_high", "Extra thread-pool slots for high and critical tasks.",
          p.limits.reserve_high);
  s.value("atask_pool_min_threads", "Thread-pool threads kept alive while idle.", p.limits.min_threads);
  s.value("atask_pool_max_threads", "Upper bound on thread-pool threads for non-critical tasks (0 = none).",
          p.limits.max_threads);
}

void add_processes(Scrape& s, const ProcessPoolInfo& p) {
  s.value("atask_process_children", "Live child processes of the process pool (idle, busy or being forked).",
          p.children);
  s.value("atask_process_idle_children", "Child processes not running a task.", p.idle_children);
  auto& running = s.gauge("atask_process_running_tasks", "Tasks running in child processes, by priority.");
  auto& queued = s.gauge("atask_process_queued_tasks", "Tasks waiting for a child process, by priority.");
  for (Priority pr : all_priorities) {
    running.Add({{"priority", label(pr)}}).Set(p.running[index(pr)]);
    queued.Add({{"priority", label(pr)}}).Set(p.queued[index(pr)]);
  }
  s.value("atask_process_pool_size", "Child-process slots every priority may use.", p.options.pool_size);
  s.value("atask_process_reserve_normal", "Extra child-process slots for normal, high and critical tasks.",
          p.options.reserve_normal);
  s.value("atask_process_reserve_high", "Extra child-process slots for high and critical tasks.",
          p.options.reserve_high);
  auto& restarts =
      s.counter("atask_process_child_restarts_total",
                "Child processes replaced, by reason: crashed (died on its own), killed (hard time "
                "limit or cancel), recycled (max_tasks_per_child).");
  restarts.Add({{"reason", "crashed"}}).Increment(static_cast<double>(p.crashed));
  restarts.Add({{"reason", "killed"}}).Increment(static_cast<double>(p.killed));
  restarts.Add({{"reason", "recycled"}}).Increment(static_cast<double>(p.recycled));
  s.counter("atask_process_children_spawned_total", "Child processes forked since the process pool started.")
      .Add({})
      .Increment(static_cast<double>(p.spawned));
}

void add_workers(Scrape& s, const std::vector<WorkerInfo>& ws) {
  auto& runs = s.counter("atask_worker_runs_total", "Executor calls that returned or threw, by worker.");
  auto& errors = s.counter("atask_worker_errors_total", "Executor calls that threw, by worker.");
  auto& active =
      s.gauge("atask_worker_active", "1 while the worker is active (started and not stopping), else 0.");
  auto& queue =
      s.gauge("atask_worker_queue_length", "Items waiting in a queue worker's queue (0 for other kinds).");
  auto& last_run = s.gauge("atask_worker_last_run_timestamp_seconds",
                           "When the worker's last executor call started (Unix time); no series before "
                           "its first call.");
  for (const auto& w : ws) {
    // Names are unique within a supervisor; Add() would merge two equal
    // label sets into one series anyway.
    // worker_kind, not kind: on the task metrics `kind` is thread,
    // coroutine or process; one label name has one meaning.
    const prometheus::Labels wk{{"worker", w.name}, {"worker_kind", std::string(to_string(w.kind))}};
    runs.Add(wk).Increment(static_cast<double>(w.runs));
    errors.Add(wk).Increment(static_cast<double>(w.errors));
    active.Add({{"worker", w.name}}).Set(w.state == WorkerState::active ? 1 : 0);
    queue.Add({{"worker", w.name}}).Set(static_cast<double>(w.queue_length));
    if (w.last_run)
      last_run.Add({{"worker", w.name}})
          .Set(std::chrono::duration<double>(w.last_run->time_since_epoch()).count());
  }
}

}  // namespace

std::string prometheus_text(const Supervisor& sv) {
  const SupervisorInfo info = sv.info();
  const TaskMetrics tasks = sv.task_metrics();
  const std::vector<WorkerInfo> workers = sv.workers();
  const bool with_processes = info.processes.enabled;

  Scrape s;
  s.gauge("atask_supervisor_info", "Always 1; the label names the supervisor.").Add({{"id", info.id}}).Set(1);
  // One series per state, 1 for the current one: a label that changed with
  // the state would end one series and start another at every change.
  auto& state = s.gauge("atask_supervisor_state", "1 for the supervisor's current state, 0 for the others.");
  for (SupervisorState st : {SupervisorState::created, SupervisorState::running, SupervisorState::stopping,
                             SupervisorState::stopped})
    state.Add({{"state", std::string(to_string(st))}}).Set(st == info.state ? 1 : 0);
  s.value("atask_supervisor_active_tasks", "Tasks queued, delayed or running.",
          static_cast<double>(info.active_tasks));
  add_tasks(s, tasks, with_processes);
  add_pool(s, info.pool);
  if (with_processes) add_processes(s, info.processes);
  add_workers(s, workers);
  return s.text();
}

namespace detail {

std::string jobs_metrics_text(const Jobs& jobs) {
  // type -> status -> count, every status of every type present (0 too), so
  // a series does not vanish when its last job moves on.
  std::map<std::string, std::array<std::uint64_t, 4>> held;
  for (const auto& t : jobs.types()) held[t].fill(0);
  for (const auto& j : jobs.list()) {
    auto& h = held[j.type];
    ++h[static_cast<std::size_t>(j.status)];
  }
  Scrape s;
  auto& g = s.gauge("atask_job_held",
                    "Jobs this process holds in memory (queued, running, and finished ones not yet dropped), "
                    "by type and status.");
  for (const auto& [type, counts] : held)
    for (JobStatus st : {JobStatus::queued, JobStatus::running, JobStatus::done, JobStatus::failed})
      g.Add({{"type", type}, {"status", std::string(to_string(st))}})
          .Set(static_cast<double>(counts[static_cast<std::size_t>(st)]));
  auto& finished =
      s.counter("atask_job_finished_total",
                "Jobs finished since the Jobs object was made, by type and status (done, failed).");
  auto& run = s.histogram("atask_job_run_seconds",
                          "Time from start to finish of the finished jobs that had started, by type.");
  const prometheus::Histogram::BucketBoundaries bounds(job_time_buckets.begin(), job_time_buckets.end());
  for (const auto& st : jobs.finished_stats()) {
    finished.Add({{"type", st.type}, {"status", "done"}}).Increment(static_cast<double>(st.done));
    finished.Add({{"type", st.type}, {"status", "failed"}}).Increment(static_cast<double>(st.failed));
    std::vector<double> increments(st.run.counts.begin(), st.run.counts.end());
    increments.resize(bounds.size() + 1);  // ObserveMultiple wants exactly one per bucket
    run.Add({{"type", st.type}}, bounds).ObserveMultiple(increments, st.run.sum);
  }
  return s.text();
}

std::string server_metrics_text(const ServerStats& st) {
  Scrape s;
  s.counter("atask_http_connections_accepted_total", "Connections the control plane accepted.")
      .Add({})
      .Increment(static_cast<double>(st.connections_accepted));
  s.counter("atask_http_connections_refused_total",
            "Connections closed at once because max_connections were open.")
      .Add({})
      .Increment(static_cast<double>(st.connections_refused));
  s.value("atask_http_connections_open", "Connections open now.", static_cast<double>(st.connections_open));
  auto& requests =
      s.counter("atask_http_requests_total", "Requests answered, by status class (2xx, 4xx, ...).");
  for (std::size_t c = 0; c < st.requests_by_class.size(); ++c)
    requests.Add({{"status_class", std::to_string(c + 1) + "xx"}})
        .Increment(static_cast<double>(st.requests_by_class[c]));
  s.counter("atask_http_timeouts_total",
            "Connections closed by request_timeout (a request not sent or a response not taken in time).")
      .Add({})
      .Increment(static_cast<double>(st.timeouts));
  s.value("atask_http_streams_open", "Job progress streams being written now.",
          static_cast<double>(st.streams_open));
  s.value("atask_http_event_streams_open", "Dashboard event streams (GET /api/events) being written now.",
          static_cast<double>(st.event_streams_open));
  return s.text();
}

}  // namespace detail

}  // namespace atask::http
