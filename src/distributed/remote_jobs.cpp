// Remote jobs: a job that sends a named task to the cluster and follows it.

#include <atask/distributed/remote_jobs.hpp>

#include <boost/json/serialize.hpp>

#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>

namespace atask::distributed {

namespace {

// Progress arrives on the client's I/O thread, maybe after the job has
// ended (a task that ignored its cancel): the relay lets go of the job's
// context before the executor returns.
struct Relay {
  std::mutex m;
  JobContext* job = nullptr;
  void forward(const RemoteProgress& p) {
    std::lock_guard lk(m);
    if (job) job->progress(p.fraction, p.message);
  }
  void detach() {
    std::lock_guard lk(m);
    job = nullptr;
  }
};

struct Detach {
  std::shared_ptr<Relay> relay;
  ~Detach() { relay->detach(); }
};

}  // namespace

void add_remote_job_type(Jobs& jobs, Client& client, std::string type, std::string task, RemoteJobOptions o) {
  if (task.empty()) throw OptionsError("add_remote_job_type() - the task name is empty");
  if (o.stop_grace.count() < 0) throw OptionsError("add_remote_job_type() - stop_grace is negative");
  const JobTypeOptions job_options = o.job;
  jobs.add_type(
      std::move(type),
      [&client, task = std::move(task), o = std::move(o)](JobContext& job) {
        boost::json::array args = o.args ? o.args(job.params()) : boost::json::array{job.params()};
        SendOptions so = o.send;
        if (o.shared && !so.idempotency_key) so.idempotency_key = "job:" + job.info().key;
        auto h = client.send(task, std::move(args), so);
        auto relay = std::make_shared<Relay>();
        relay->job = &job;
        Detach detach{relay};
        h.on_progress([relay](const RemoteProgress& p) { relay->forward(p); });
        // Woken by the outcome (client's I/O thread) or a stop request.
        struct Wake {
          std::mutex m;
          std::condition_variable cv;
          bool done = false;
        };
        auto wake = std::make_shared<Wake>();
        const auto notify = [wake](bool done) {
          {
            std::lock_guard lk(wake->m);
            wake->done = wake->done || done;
          }
          wake->cv.notify_all();
        };
        h.when_done([notify] { notify(true); });
        {
          std::stop_callback on_stop(job.stop_token(), [notify] { notify(false); });
          std::unique_lock lk(wake->m);
          wake->cv.wait(lk, [&] { return wake->done || job.stop_requested(); });
        }
        if (!h.done()) {
          (void)h.cancel();
          if (!h.wait_for(o.stop_grace))
            throw TaskCanceled("the job was asked to stop; remote task " + h.id() +
                               " was asked to cancel and had not ended after " +
                               std::to_string(o.stop_grace.count()) + " ms");
        }
        const boost::json::value result = h.get();  // throws RemoteError, TaskCanceled
        std::ofstream out(job.output_path(), std::ios::binary | std::ios::trunc);
        out << boost::json::serialize(result);
        if (!out.flush())
          throw std::runtime_error("could not write the result of remote task " + h.id() + " to " +
                                   job.output_path().string());
      },
      job_options);
}

}  // namespace atask::distributed
