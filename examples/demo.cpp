// The atask demo: a small service that embeds a supervisor and keeps it busy
// with work of every priority - blocking jobs on the priority pool, coroutine
// jobs on an aloop, delayed jobs - and with one worker of every type (an
// interval worker reports, a queue worker ingests, an event worker flushes,
// a background worker and an async worker keep going), printing what
// happens - and runs CPU-heavy work and a crashing native call in child
// processes - then shuts down in stages and prints the report. It serves
// the HTTP control plane and its dashboard on http://127.0.0.1:8080 (--port
// N; 0 picks a free port) with a job type, "report", that streams progress.
// Runs until Ctrl-C / SIGTERM (a second signal skips to the next stage), or
// stops by itself after --seconds N.
#include <atask/atask.hpp>
#include <atask/http.hpp>
#include <atask/jobs.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using atask::Priority;

namespace {

std::mutex out_m;
template <class... A>
void say(const char* fmt, A... a) {
  std::lock_guard lk(out_m);
  std::printf(fmt, a...);
  std::fflush(stdout);
}

const auto t0 = std::chrono::steady_clock::now();
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Simulated blocking work: a priority-specific duration.
int blocking_job(std::stop_token st, Priority p, int n) {
  const auto work = p == Priority::low ? 60ms : p == Priority::normal ? 40ms : 20ms;
  const auto until = std::chrono::steady_clock::now() + work;
  while (std::chrono::steady_clock::now() < until) {
    if (st.stop_requested()) return -1;  // honours soft shutdown
    std::this_thread::sleep_for(5ms);
  }
  if (p == Priority::critical)
    say("%6.2fs  critical job #%d done (it never waited for a slot)\n", now_s(), n);
  return n;
}

asio::awaitable<int> fetch(int n) {
  asio::steady_timer t(co_await asio::this_coro::executor, 30ms);  // an I/O wait holding no thread
  co_await t.async_wait(asio::use_awaitable);
  co_return n * 10;
}

// Process tasks: plain functions run in child processes.
long count_primes(long below) {  // CPU-heavy work, off the service's threads
  long n = 0;
  for (long k = 2; k < below; ++k) {
    bool prime = true;
    for (long d = 2; d * d <= k; ++d)
      if (k % d == 0) {
        prime = false;
        break;
      }
    n += prime;
  }
  return n;
}

long primes_below_200k() {
  return count_primes(200'000);
}

int native_crash(int) {  // a bug in a native library, say: the child dies, the service does not
  std::abort();
}

// A job: builds a "report" in `rows` steps, reporting progress as it goes,
// and writes it to the file the job queue names.
void build_report(atask::JobContext& job) {
  const auto& p = job.params();
  const std::int64_t rows = p.contains("rows") && p.at("rows").is_int64() ? p.at("rows").as_int64() : 20;
  if (rows < 1 || rows > 10'000) throw std::invalid_argument("rows must be 1 to 10000");
  std::ofstream out(job.output_path());
  for (std::int64_t r = 1; r <= rows; ++r) {
    if (job.stop_requested()) throw std::runtime_error("stopped");
    std::this_thread::sleep_for(100ms);  // the work of one row
    out << "row " << r << ": " << count_primes(2'000 + 100 * r) << " primes\n";
    job.progress(static_cast<double>(r) / static_cast<double>(rows),
                 "row " + std::to_string(r) + " of " + std::to_string(rows));
  }
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 0;  // 0: until Ctrl-C
  int port = 8080;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--seconds N (0: until Ctrl-C)] [--port N (0: any free port)]\n",
                   argv[0]);
      return 2;
    }
  }
  if (seconds < 0 || port < 0 || port > 65535) {
    std::fprintf(stderr, "atask_demo: --seconds must be >= 0 and --port 0 to 65535\n");
    return 2;
  }

  auto logger = spdlog::default_logger()->clone("atask");
  logger->set_pattern("         [%n] %^%l%$ %v");
  logger->set_level(spdlog::level::info);

  atask::Supervisor sv({
      .id = "demo",
      .pool_size = 2,
      .reserve_normal = 1,
      .reserve_high = 1,
      .timeout_warning = 250ms,
      .on_timeout_warning =
          [](const atask::TaskInfo& i) {
            say("%6.2fs  a %s job waited too long for a slot (task #%llu)\n", now_s(),
                std::string(atask::to_string(i.priority)).c_str(), static_cast<unsigned long long>(i.id));
          },
      .handle_signals = true,
      .signal_stop = {.cancel_queued = true, .warm_timeout = 2s, .soft_timeout = 1s},
      .logger = logger,
      .processes = {.pool_size = 2, .time_limit = 2s},
  });
  // Jobs and the HTTP control plane (before start(): serve() adds a step).
  const auto jobs_dir = std::filesystem::temp_directory_path() / "atask-demo-jobs";
  atask::Jobs jobs(sv, {.storage_dir = jobs_dir, .max_running = 2});
  jobs.add_type("report", build_report);
  auto http = atask::http::serve(sv, {.port = static_cast<unsigned short>(port), .jobs = &jobs});
  try {
    sv.start();
  } catch (const atask::Error& e) {
    std::fprintf(stderr, "atask_demo: %s\n(is another demo running? try --port 0)\n", e.what());
    return 1;
  }
  sv.create_aloop("io", {.make_default = true});
  say("atask demo: supervisor 'demo' with pool_size 2 (+1 reserved for normal, +1 for high), "
      "aloop 'io', 2 child processes.\n");
  say("atask demo: dashboard on %s/ (JSON under /api, Prometheus metrics at /metrics, job results in %s)\n",
      http.url().c_str(), jobs_dir.c_str());
  if (seconds > 0)
    say("atask demo: running for %d s; Ctrl-C stops it early.\n", seconds);
  else
    say("atask demo: running until Ctrl-C.\n");

  // -- one worker of every type --------------------------------------------------
  std::atomic<long> ingested{0}, ingest_sum{0}, flushes{0}, housekeeping{0}, pings{0};
  auto ingest = atask::queue_worker<int>(  // items from the service loop, in order
      sv,
      [&](int x) {
        ++ingested;
        ingest_sum += x;
      },
      {.name = "ingest", .capacity = 1000});
  auto flush = atask::event_worker(  // runs when triggered; triggers during a run coalesce
      sv,
      [&](atask::WorkerContext& ctx) {
        say("%6.2fs  %s: flushed after %ld ingested items (task #%llu)\n", now_s(), ctx.name.c_str(),
            ingested.load(), static_cast<unsigned long long>(ctx.task_id));
        ++flushes;
      },
      {.name = "flush", .priority = Priority::high});
  auto janitor = atask::background_worker(  // again and again, at low priority
      sv,
      [&](atask::WorkerContext& ctx) {
        ++housekeeping;
        for (int i = 0; i < 20 && !ctx.stop_requested(); ++i) std::this_thread::sleep_for(1ms);
      },
      {.name = "janitor", .priority = Priority::low});
  auto pinger = atask::background_worker(  // a coroutine loop on aloop 'io'
      sv,
      [&](atask::WorkerContext&) -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor, 200ms);
        co_await t.async_wait(asio::use_awaitable);
        ++pings;
      },
      {.name = "pinger", .aloop = "io"});
  auto stats = atask::interval_worker(  // fixed rate: every second, no drift
      sv,
      [&] {
        for (const auto& w : sv.workers())
          if (w.name != "stats")
            say("%6.2fs  worker %-8s %-8s runs %-6llu errors %llu%s\n", now_s(), w.name.c_str(),
                std::string(atask::to_string(w.state)).c_str(), static_cast<unsigned long long>(w.runs),
                static_cast<unsigned long long>(w.errors),
                w.kind == atask::WorkerKind::queue ? (" queued " + std::to_string(w.queue_length)).c_str()
                                                   : "");
        say("%6.2fs  ingested %ld items (sum %ld), %ld flushes, %ld housekeeping rounds, %ld pings\n",
            now_s(), ingested.load(), ingest_sum.load(), flushes.load(), housekeeping.load(), pings.load());
      },
      {.name = "stats", .priority = Priority::high, .interval = 1s, .delay_before = 500ms});
  std::atomic<long> primes_runs{0};
  auto primes = atask::interval_worker(  // its executor runs in a child process; the result comes back here
      sv, atask::process(&primes_below_200k, {.time_limit = 1s}),
      [&](long found, atask::WorkerContext& ctx) {
        if (++primes_runs % 4 == 1)
          say("%6.2fs  %s: a child process counted %ld primes below 200000 (task #%llu)\n", now_s(),
              ctx.name.c_str(), found, static_cast<unsigned long long>(ctx.task_id));
      },
      {.name = "primes", .interval = 500ms});
  for (atask::Worker* w : std::initializer_list<atask::Worker*>{ingest.get(), flush.get(), janitor.get(),
                                                                pinger.get(), stats.get()})
    w->start();
  primes->start({.interval = 500ms});

  auto job = atask::background_task(sv, blocking_job);
  auto crash = atask::background_task(sv, atask::process(&native_crash));
  auto io = atask::background_task(sv, fetch, {.aloop = "io"});
  std::mt19937 rng(42);
  int n = 0;
  std::atomic<int> io_done{0};
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  auto next_report = std::chrono::steady_clock::now();
  auto next_job = std::chrono::steady_clock::now() + 1s;
  std::optional<atask::Job> last_job;

  while (sv.is_running() && (seconds == 0 || std::chrono::steady_clock::now() < end)) {
    try {
      // A burst of work: mostly low and normal, some high, now and then critical.
      (void)job.with({.priority = Priority::low}, Priority::low, ++n);
      if (rng() % 2 == 0) (void)job.with({.priority = Priority::normal}, Priority::normal, ++n);
      if (rng() % 5 == 0)
        for (int k = 0; k < 4; ++k)
          (void)job.with({.priority = Priority::low}, Priority::low, ++n);  // a spike
      if (rng() % 3 == 0) (void)job.with({.priority = Priority::high}, Priority::high, ++n);
      if (rng() % 10 == 0) {
        say("%6.2fs  submitting critical job #%d\n", now_s(), n + 1);
        (void)job.with({.priority = Priority::critical}, Priority::critical, ++n);
      }
      if (rng() % 4 == 0)
        (void)job.with({.priority = Priority::normal, .delay = 500ms, .name = "delayed"}, Priority::normal,
                       ++n);
      if (n % 40 == 1)
        crash(n).async_get([](std::exception_ptr e, int) {
          try {
            if (e) std::rethrow_exception(e);
          } catch (const atask::ChildCrashed& c) {
            say("%6.2fs  a process task crashed its child (signal %d); the pool replaced the child\n",
                now_s(), c.signal());
          } catch (...) {
          }
        });
      for (int k = 0; k < 10; ++k) ingest->put(n * 10 + k);
      if (rng() % 3 == 0) flush->trigger();
      auto h = io(++n);
      h.async_get([&io_done](std::exception_ptr e, int) {
        if (!e) ++io_done;
      });
    } catch (const atask::LifecycleError&) {
      break;  // a signal started the shutdown meanwhile
    }
    if (std::chrono::steady_clock::now() >= next_job) {  // a new report every 15 s
      next_job += 15s;
      try {
        last_job =
            jobs.ensure_run("report", {{"rows", 30}, {"started_at_s", static_cast<std::int64_t>(now_s())}});
        say("%6.2fs  job #%llu (report) started; follow it on the dashboard\n", now_s(),
            static_cast<unsigned long long>(last_job->id()));
      } catch (const atask::Error&) {
      }
    }
    if (std::chrono::steady_clock::now() >= next_report) {
      auto i = sv.info();
      auto& p = i.pool;
      say("%6.2fs  pool: %d threads | running low %d normal %d high %d critical %d | queued low %d normal %d "
          "high %d"
          " | done %llu | coroutine jobs done %d\n",
          now_s(), p.threads, p.running[0], p.running[1], p.running[2], p.running[3], p.queued[0],
          p.queued[1], p.queued[2], static_cast<unsigned long long>(p.completed_total), io_done.load());
      auto& pp = i.processes;
      say("%6.2fs  processes: %d children (%d idle) | done %llu | crashed %llu, replaced: %llu forked in "
          "all\n",
          now_s(), pp.children, pp.idle_children, static_cast<unsigned long long>(pp.completed_total),
          static_cast<unsigned long long>(pp.crashed), static_cast<unsigned long long>(pp.spawned));
      next_report += 1s;
    }
    std::this_thread::sleep_for(100ms);  // the service's own pace
  }

  say("%6.2fs  shutting down: warm (queued jobs canceled, running ones finish), soft after 2 s, cold after 1 "
      "s more\n",
      now_s());
  atask::StopReport r =
      sv.is_running() ? sv.stop({.cancel_queued = true, .warm_timeout = 2s, .soft_timeout = 1s}) : sv.block();
  auto c = sv.info().tasks;
  unsigned long long done = 0, failed = 0, canceled = 0;
  for (std::size_t k = 0; k < atask::priority_count; ++k) {
    done += c.completed[k];
    failed += c.failed[k];
    canceled += c.canceled[k];
  }
  say("%6.2fs  stopped at the %s stage: %llu jobs completed, %llu failed, %llu canceled (%zu never started), "
      "%zu abandoned\n",
      now_s(), std::string(atask::to_string(r.stage)).c_str(), done, failed, canceled, r.canceled,
      r.abandoned.size());
  return 0;
}
