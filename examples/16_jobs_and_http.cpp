// 16: jobs and the HTTP control plane. A job type reports progress and
// writes a result file; ensure_run() starts a job only once for the same
// parameters, and finds a finished one again in its storage directory.
// The same supervisor serves its JSON API, metrics and dashboard over HTTP
// (link atask::http): open the printed URL while it runs, or try
//   curl -N -X POST -d '{"n": 7}' http://127.0.0.1:<port>/api/jobs/squares
#include <atask/atask.hpp>
#include <atask/http.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace std::chrono_literals;

int main() {
  atask::Supervisor sv({.id = "jobs-demo"});
  const auto dir = std::filesystem::temp_directory_path() / "atask-example-16";
  std::filesystem::remove_all(dir);  // start clean, so the first job really runs

  atask::Jobs jobs(sv, {.storage_dir = dir, .max_running = 2});
  jobs.add_type("squares", [](atask::JobContext& job) {
    const auto n = job.params().at("n").as_int64();
    std::ofstream out(job.output_path());
    for (std::int64_t i = 1; i <= n; ++i) {
      if (job.stop_requested()) throw std::runtime_error("stopped");
      std::this_thread::sleep_for(20ms);  // the slow part
      out << i * i << "\n";
      job.progress(static_cast<double>(i) / static_cast<double>(n), "square " + std::to_string(i));
    }
  });
  auto http = atask::http::serve(sv, {.port = 0, .jobs = &jobs});  // 0: any free port
  sv.start();
  std::printf("serving on %s/ (GET /api/jobs, POST /api/jobs/squares, /metrics)\n", http.url().c_str());

  // Two identical requests (key order does not matter): one job.
  auto a = jobs.ensure_run("squares", {{"n", 5}});
  auto b = jobs.ensure_run("squares", {{"n", 5}});
  std::printf("same job: %s (#%llu)\n", a.id() == b.id() ? "yes" : "no",
              static_cast<unsigned long long>(a.id()));

  // Follow it: wait_change() returns at every change.
  atask::JobInfo j = a.info();
  while (!j.finished()) {
    j = a.wait_change(j.version, std::chrono::steady_clock::now() + 10s);
    std::printf("  %3.0f%%  %s\n", j.fraction * 100, j.message.c_str());
  }
  std::printf("%s: result in %s\n", std::string(atask::to_string(j.status)).c_str(), j.result_path.c_str());

  // Later (even in another process): the done job is found in storage.
  atask::Jobs again(sv, {.storage_dir = dir});
  again.add_type("squares", [](atask::JobContext&) { std::puts("never runs"); });
  auto found = again.ensure_run("squares", {{"n", 5}}).info();
  std::printf("found again: %s, from storage: %s\n", std::string(atask::to_string(found.status)).c_str(),
              found.from_storage ? "yes" : "no");

  sv.stop();
  std::filesystem::remove_all(dir);
  return j.status == atask::JobStatus::done && found.from_storage ? 0 : 1;
}
