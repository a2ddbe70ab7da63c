#pragma once
/// @file
/// Remote jobs: a job type (jobs.hpp) whose work runs on the cluster. The
/// process that owns the Jobs - an API server, typically - keeps what jobs
/// give (de-duplication, a result file, progress streams over HTTP), and a
/// worker on any machine does the work.
///
/// @code
///   atask::Jobs jobs(sv, {.storage_dir = "/var/lib/api/jobs"});
///   atask::distributed::Client client({.broker = "redis://10.0.0.5:6379"});
///   atask::distributed::add_remote_job_type(jobs, client, "index", "index_document");
///   // POST /api/jobs/index {"doc": 1234} now streams the progress that
///   // index_document reports with report_progress() on whichever worker runs it.
/// @endcode
///
/// Each job sends the task once and follows it:
///  - the task's progress becomes the job's progress (fraction and message);
///  - the task's JSON result is written to the job's result file;
///  - a failed, dead-lettered or canceled task fails the job, with the
///    remote error type and message in the job's error;
///  - the job asked to stop (its Jobs destroyed, its supervisor stopping)
///    cancels the task, and waits for its outcome at most `stop_grace`;
///  - jobs with the same type and params on other processes share the task
///    (RemoteJobOptions::shared).
/// While it follows the task a job holds one thread of the owner's pool,
/// as every job does; JobsOptions::max_running bounds them.

#include <atask/distributed/client.hpp>
#include <atask/jobs/jobs.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace atask::distributed {

struct RemoteJobOptions {
  /// How the task is sent (queue, priority, time limit, result TTL).
  SendOptions send{};
  /// The task's arguments from the job's params. Unset: the params object
  /// is the task's one argument.
  std::function<boost::json::array(const boost::json::object&)> args{};
  /// The job type's own options (the priority of the pool thread that
  /// follows the task).
  JobTypeOptions job{};
  /// After the job is asked to stop and the task canceled: how long the job
  /// waits for the task's outcome before it ends failed anyway.
  std::chrono::milliseconds stop_grace{5'000};
  /// Jobs with the same type and params share one remote task across every
  /// process that uses this job type on the cluster (an idempotency key
  /// derived from Jobs::key_of), while Redis has it: two API servers asked
  /// for the same job send it once. False: each job sends its own task.
  bool shared = true;
};

/// Registers job type `type` on `jobs`: each job sends task `task` through
/// `client` and follows it (see the file comment). `client` must outlive
/// `jobs`.
/// @throws OptionsError as Jobs::add_type does, and for an empty task name
///         or a negative stop_grace.
void add_remote_job_type(Jobs& jobs, Client& client, std::string type, std::string task,
                         RemoteJobOptions options = {});

}  // namespace atask::distributed
