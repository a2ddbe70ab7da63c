#pragma once
/// @file
/// Jobs: named, de-duplicated, long-running work that reports progress and
/// produces a result file: an in-process work queue for a web service, in
/// the manner of Python's `workqueue` package. A repeated request joins the
/// job already under way, each set of parameters gets one result file, and
/// clients follow a job's progress, picking it up again after a reconnect.
///
/// @code
///   atask::Jobs jobs(sv, {.storage_dir = "/var/lib/svc/jobs", .max_running = 2});
///   jobs.add_type("index", [](atask::JobContext& job) {
///     for (int i = 1; i <= 10; ++i) {
///       if (job.stop_requested()) throw std::runtime_error("stopped");
///       do_part(i);
///       job.progress(i / 10.0, "part " + std::to_string(i));
///     }
///     std::ofstream(job.output_path()) << "the result";
///   });
///   auto job = jobs.ensure_run("index", {{"doc", 1234}});  // joins an identical job
///   auto done = job->wait();                                // done.result_path
/// @endcode
///
/// ensure_run(type, params) starts a job only if an identical one (same type,
/// same params; object key order does not matter) is not already queued,
/// running or done. A done job's result is found again in storage_dir, under
/// a name derived from a SHA-256 of the type and the canonical params - never
/// from the params themselves. A failed job is not remembered for
/// de-duplication: the next ensure_run tries again.
///
/// Jobs run on the supervisor's thread pool, at most max_running at a time;
/// the others wait in FIFO order.

#include <atask/core/metrics.hpp>
#include <atask/core/priority.hpp>
#include <atask/util/enum_names.hpp>

#include <boost/json/object.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

namespace atask {

class Supervisor;

/// Named "queued", "running", "done", "failed" by to_string() / from_string()
/// (enum_names.hpp).
enum class JobStatus : unsigned char { queued, running, done, failed };
BOOST_DESCRIBE_ENUM(JobStatus, queued, running, done, failed)

/// Bucket upper bounds (seconds) of JobTypeStats::run: jobs run for
/// seconds to an hour.
inline constexpr std::array<double, 13> job_time_buckets{0.1, 0.5, 1,   2.5, 5,    10,  30,
                                                         60,  120, 300, 600, 1800, 3600};

/// The jobs of one type that finished since the Jobs object was made
/// (Jobs::finished_stats()), whether or not they are still held.
struct JobTypeStats {
  std::string type;
  std::uint64_t done = 0;    ///< ended with a result
  std::uint64_t failed = 0;  ///< failed, including canceled ones (a stop, ~Jobs)
  /// Started to finished, of the finished jobs that had started (one that
  /// ended while queued has no run); bounds job_time_buckets.
  HistogramSnapshot run;
};

/// A snapshot of one job.
struct JobInfo {
  using time_point = std::chrono::system_clock::time_point;
  std::uint64_t id = 0;  ///< unique within the Jobs object, from 1
  std::string type;
  std::string key;  ///< hex SHA-256 of type + canonical params: the result's file stem
  boost::json::object params;
  JobStatus status = JobStatus::queued;
  double fraction = 0;                ///< 0..1, as last reported (1 once done)
  std::string message;                ///< as last reported
  std::string error;                  ///< failed: what the executor threw
  std::filesystem::path result_path;  ///< done: the result file in storage_dir
  bool from_storage = false;          ///< done before this process saw it: found in storage_dir
  std::uint64_t version = 0;          ///< grows by one at every change (progress or status)
  std::optional<time_point> created_at, started_at, finished_at;
  bool finished() const noexcept { return status == JobStatus::done || status == JobStatus::failed; }
};

/// What a job's executor gets.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
class JobContext {
 public:
  virtual ~JobContext() = default;
  virtual const JobInfo& info() const noexcept = 0;  ///< as it was when the job started
  const boost::json::object& params() const noexcept { return info().params; }
  /// Reports progress: fraction is clamped to [0, 1]. Cheap: followers are
  /// woken, never waited for.
  /// @throws OptionsError when fraction is NaN.
  virtual void progress(double fraction, std::string_view message = {}) = 0;
  /// Where the executor writes its result (an empty file in storage_dir
  /// that exists when the job starts). On success it is renamed to the
  /// result path; on failure it is removed.
  virtual const std::filesystem::path& output_path() const noexcept = 0;
  /// Set when the Jobs object is destroyed or the supervisor stops.
  virtual std::stop_token stop_token() const noexcept = 0;
  bool stop_requested() const noexcept { return stop_token().stop_requested(); }
};

using JobFn = std::function<void(JobContext&)>;

struct JobTypeOptions {
  Priority priority = Priority::normal;  ///< of the pool task that runs the job
};

struct JobsOptions {
  /// Where results live; created if missing. Required (OptionsError if empty).
  std::filesystem::path storage_dir{};
  /// Jobs running at once (>= 1).
  int max_running = 2;
  /// Finished jobs list() still shows; done ones are found in storage anyway.
  std::size_t history_size = 100;
};

class Jobs;

namespace detail {
struct JobAccess;
}

/// A handle on one job: a value, copied by everyone who follows the job
/// (every copy is the same job).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
class Job {
 public:
  JobInfo info() const;
  std::uint64_t id() const noexcept;

  /// Blocks until the job's version is above `seen` (something changed) or
  /// the deadline passes; returns the current snapshot either way.
  JobInfo wait_change(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) const;
  /// Blocks until the job is done or failed.
  JobInfo wait() const;

  /// Calls `on_change` after every change (on the thread that made it, with
  /// no lock held; it must not block) until the Subscription is destroyed.
  /// Destroying the Subscription waits for a call in progress to return
  /// (except when destroyed inside on_change itself: then it only ends the
  /// subscription).
  ///
  /// @par Thread safety
  /// Distinct objects: Safe. Shared objects: Unsafe.
  class [[nodiscard]] Subscription {
   public:
    Subscription() = default;
    Subscription(Subscription&&) noexcept;
    Subscription& operator=(Subscription&&) noexcept;
    ~Subscription();
    explicit operator bool() const noexcept { return static_cast<bool>(state_); }

   private:
    friend class Job;
    struct State;
    std::shared_ptr<State> state_;
  };
  /// See Subscription.
  /// @throws OptionsError when on_change is empty.
  [[nodiscard]] Subscription subscribe(std::function<void()> on_change) const;

  /// The same job.
  friend bool operator==(const Job& a, const Job& b) noexcept { return a.impl_ == b.impl_; }

 private:
  friend struct detail::JobAccess;
  struct Impl;
  explicit Job(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

/// Registered job types, the running and recent jobs, and the storage.
///
/// Destroy the Jobs object before its supervisor: the destructor asks
/// running jobs to stop and waits for them (queued ones end failed,
/// "canceled"). A Jobs that outlives its supervisor does not dangle: what
/// would need the supervisor throws LifecycleError ("... is gone").
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
class Jobs {
 public:
  /// @throws OptionsError for bad options or a storage_dir that cannot be
  ///         created.
  Jobs(Supervisor& sv, JobsOptions options);
  ~Jobs();
  Jobs(const Jobs&) = delete;
  Jobs& operator=(const Jobs&) = delete;

  /// Registers a job type.
  /// @throws OptionsError for an empty name, a name taken, a name with
  ///         characters other than [A-Za-z0-9_.-], or an empty fn.
  void add_type(std::string name, JobFn fn, JobTypeOptions options = {});
  std::vector<std::string> types() const;
  bool has_type(std::string_view name) const;

  /// Returns the identical job if one is queued, running or done (in memory
  /// or in storage); otherwise queues a new one.
  /// @throws NotFoundError for an unknown type.
  /// @throws LifecycleError for a job that would have to run, when the
  ///         supervisor is not running (or gone) or the Jobs object is being
  ///         destroyed.
  Job ensure_run(std::string_view type, boost::json::object params = {});

  /// The job with this id, if still known.
  std::optional<Job> find(std::uint64_t id) const;
  /// Queued and running jobs, then finished ones, newest last.
  std::vector<JobInfo> list() const;
  /// Counts and run times of the finished jobs, per registered type (zeros
  /// included), since this object was made: what GET /metrics exports as
  /// atask_job_finished_total and atask_job_run_seconds.
  std::vector<JobTypeStats> finished_stats() const;

  const JobsOptions& options() const noexcept;

  /// Calls f first thing in ~Jobs, on the destroying thread (for objects
  /// that refer to this Jobs and must let go of it, such as the HTTP
  /// server). f must not call back into this Jobs.
  void when_destroyed(std::function<void()> f);

  /// The key ensure_run uses: hex SHA-256 of `type`, a newline and the
  /// params serialized with object keys sorted (recursively).
  static std::string key_of(std::string_view type, const boost::json::object& params);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace atask
