// Jobs: types, de-duplication, the queue of jobs waiting for a slot, progress
// and subscriptions. Keys and the result files are in job_store.cpp.
#include <atask/jobs/jobs.hpp>

#include "supervisor/access.hpp"

#include <atask/core/errors.hpp>
#include <atask/supervisor/supervisor.hpp>

#include "jobs/job_store.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

namespace atask {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

using sys_clock = std::chrono::system_clock;

bool valid_type_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "the job's executor threw an exception that is not a std::exception";
  }
}

}  // namespace

namespace detail {
// -- subscriptions -----------------------------------------------------------------------

// What Job::Impl keeps of a subscription (Job::Subscription::State derives
// from it: that one is private to Subscription).
struct JobSubState {
  std::function<void()> fn;
  std::mutex call_m;                      // held while fn runs: the destructor waits on it
  bool active = true;                     // guarded by call_m (except from inside fn itself)
  std::atomic<std::thread::id> caller{};  // the thread inside fn, if any
};

}  // namespace detail
using detail::JobSubState;

struct Job::Subscription::State : JobSubState {};

// -- Job::Impl ---------------------------------------------------------------------------

namespace detail {
// The one way in to Job's private parts (its Impl and its constructor).
struct JobAccess {
  using Impl = Job::Impl;
  static Job make(std::shared_ptr<Impl> impl) noexcept { return Job(std::move(impl)); }
};
}  // namespace detail

struct Job::Impl {
  Impl(JobInfo i, std::shared_ptr<const JobFn> f, Priority p)
      : id(i.id), fn(std::move(f)), priority(p), info(std::move(i)) {}

  const std::uint64_t id;
  const std::shared_ptr<const JobFn> fn;  // null for a job found in storage
  const Priority priority;

  mutable std::mutex m;
  mutable std::condition_variable cv;
  JobInfo info;                                  // guarded by m
  std::vector<std::weak_ptr<JobSubState>> subs;  // guarded by m

  // Guarded by the owning Jobs::Impl's mutex.
  bool holds_slot = false;  // submitted to the pool: counts against max_running

  JobInfo snapshot() const {
    std::lock_guard lk(m);
    return info;
  }

  // Applies `change` to info under the lock, bumps the version, wakes the
  // waiters; the caller then calls notify() with no lock held.
  template <class F>
  bool update(F&& change) {
    std::lock_guard lk(m);
    if (!change(info)) return false;
    ++info.version;
    cv.notify_all();
    return true;
  }

  // Calls the subscribers, with no lock held, on this thread.
  void notify() {
    std::vector<std::shared_ptr<JobSubState>> live;
    {
      std::lock_guard lk(m);
      live.reserve(subs.size());
      std::erase_if(subs, [&](const std::weak_ptr<JobSubState>& w) {
        auto s = w.lock();
        if (!s) return true;
        live.push_back(std::move(s));
        return false;
      });
    }
    const auto me = std::this_thread::get_id();
    for (auto& s : live) {
      // A change made from inside this subscription's own callback: do not
      // call it again (and do not lock call_m twice).
      if (s->caller.load() == me) continue;
      std::lock_guard lk(s->call_m);
      if (!s->active) continue;
      s->caller.store(me);
      try {
        s->fn();
      } catch (...) {  // a follower must not take the job's thread down
      }
      s->caller.store(std::thread::id{});
    }
  }

  void progress(double fraction, std::string_view message) {
    if (std::isnan(fraction)) throw OptionsError("JobContext::progress() - fraction is NaN");
    fraction = std::clamp(fraction, 0.0, 1.0);
    const bool changed = update([&](JobInfo& i) {
      if (i.status != JobStatus::running) return false;
      i.fraction = fraction;
      i.message.assign(message);
      return true;
    });
    if (changed) notify();
  }
};

using JobImpl = detail::JobAccess::Impl;

// -- Job -------------------------------------------------------------------------------

JobInfo Job::info() const {
  return impl_->snapshot();
}

std::uint64_t Job::id() const noexcept {
  return impl_->id;
}

JobInfo Job::wait_change(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lk(impl_->m);
  impl_->cv.wait_until(lk, deadline, [&] { return impl_->info.version > seen; });
  return impl_->info;
}

JobInfo Job::wait() const {
  std::unique_lock lk(impl_->m);
  impl_->cv.wait(lk, [&] { return impl_->info.finished(); });
  return impl_->info;
}

Job::Subscription Job::subscribe(std::function<void()> on_change) const {
  if (!on_change) throw OptionsError("Job::subscribe() - empty callback");
  auto st = std::make_shared<Subscription::State>();
  st->fn = std::move(on_change);
  {
    std::lock_guard lk(impl_->m);
    impl_->subs.push_back(st);
  }
  Subscription s;
  s.state_ = std::move(st);
  return s;
}

namespace {
// Ends a subscription: no call starts after this returns, and a call in
// progress on another thread is waited for. From inside the callback itself
// it cannot wait (it would wait for itself): it only deactivates.
void end_subscription(JobSubState& s) noexcept {
  if (s.caller.load() == std::this_thread::get_id()) {
    s.active = false;  // this thread holds call_m
    return;
  }
  std::lock_guard lk(s.call_m);
  s.active = false;
  s.fn = nullptr;  // what it captured goes now, not when the job does
}
}  // namespace

Job::Subscription::Subscription(Subscription&& o) noexcept : state_(std::move(o.state_)) {}

Job::Subscription& Job::Subscription::operator=(Subscription&& o) noexcept {
  if (this != &o) {
    if (state_) end_subscription(*state_);
    state_ = std::move(o.state_);
  }
  return *this;
}

Job::Subscription::~Subscription() {
  if (state_) end_subscription(*state_);
}

// -- Jobs::Impl --------------------------------------------------------------------------

namespace {

struct TypeEntry {
  std::shared_ptr<const JobFn> fn;
  JobTypeOptions options;
};

const std::string canceled_by_destructor = "canceled: Jobs destroyed";

class ContextImpl final : public JobContext {
 public:
  ContextImpl(JobImpl& job, JobInfo started, fs::path out, std::stop_token st)
      : job_(job), info_(std::move(started)), out_(std::move(out)), st_(std::move(st)) {}
  const JobInfo& info() const noexcept override { return info_; }
  void progress(double fraction, std::string_view message) override { job_.progress(fraction, message); }
  const fs::path& output_path() const noexcept override { return out_; }
  std::stop_token stop_token() const noexcept override { return st_; }

 private:
  JobImpl& job_;
  JobInfo info_;
  fs::path out_;
  std::stop_token st_;
};

}  // namespace

struct Jobs::Impl : std::enable_shared_from_this<Jobs::Impl> {
  using JobPtr = std::shared_ptr<JobImpl>;
  using Started = std::vector<std::pair<JobPtr, TaskHandle<void>>>;

  Impl(Supervisor& s, JobsOptions o)
      : home(detail::SupervisorAccess::worker_registry(s)),
        opts(std::move(o)),
        log(s.logger_ptr()),
        store(opts.storage_dir) {}

  // The supervisor, through the registry it shares with whatever outlives
  // it: home->supervisor() is null once it is gone (the lifetime rule,
  // CONTRIBUTING.md (d)), and a Jobs used after that throws.
  std::shared_ptr<detail::WorkerRegistry> home;

  Supervisor& supervisor_or_throw(const char* call) const {
    Supervisor* s = home->supervisor();
    if (!s) throw LifecycleError(std::string(call) + " - the supervisor of this Jobs object is gone");
    return *s;
  }
  const JobsOptions opts;
  const std::shared_ptr<spdlog::logger> log;
  const detail::JobStore store;
  std::stop_source stop;  // requested by ~Jobs; every running job follows it

  mutable std::mutex m;  // before any Job::Impl::m, never after
  std::map<std::string, TypeEntry, std::less<>> types;
  std::unordered_map<std::string, JobPtr> by_key;  // queued, running, done in history
  std::map<std::uint64_t, JobPtr> by_id;           // queued, running, and history
  std::deque<JobPtr> queue;                        // waiting for a slot, FIFO
  std::deque<JobPtr> history;                      // finished, oldest first
  std::vector<TaskHandle<void>> tasks;             // pool tasks not known to be final
  int running = 0;                                 // jobs holding a slot
  std::uint64_t next_id = 1;
  bool closing = false;
  std::vector<std::function<void()>> on_destroy;              // Jobs::when_destroyed
  std::map<std::string, JobTypeStats, std::less<>> finished;  // Jobs::finished_stats, by type

  // Records a job's end (under m). False if it had ended already.
  bool mark_finished_locked(const JobPtr& job, JobStatus status, const std::string& error,
                            const fs::path& result) {
    std::optional<double> ran;  // seconds, if it had started
    std::string type;
    const bool changed = job->update([&](JobInfo& i) {
      if (i.finished()) return false;
      type = i.type;
      i.status = status;
      if (status == JobStatus::done) {
        i.fraction = 1;
        i.result_path = result;
      } else {
        i.error = error;
      }
      i.finished_at = sys_clock::now();
      if (i.started_at) ran = std::chrono::duration<double>(*i.finished_at - *i.started_at).count();
      return true;
    });
    if (!changed) return false;
    count_finished_locked(type, status, ran);
    if (job->holds_slot) {
      job->holds_slot = false;
      --running;
    }
    const std::string key = job->info.key;  // immutable once created
    if (status == JobStatus::failed) {
      auto it = by_key.find(key);
      if (it != by_key.end() && it->second == job) by_key.erase(it);
    }
    std::erase(queue, job);
    history.push_back(job);
    trim_history_locked();
    return true;
  }

  void count_finished_locked(const std::string& type, JobStatus status, std::optional<double> ran) {
    auto [it, added] = finished.try_emplace(type);
    JobTypeStats& st = it->second;
    if (added) {
      st.type = type;
      st.run.bounds.assign(job_time_buckets.begin(), job_time_buckets.end());
      st.run.counts.assign(job_time_buckets.size() + 1, 0);
    }
    ++(status == JobStatus::done ? st.done : st.failed);
    if (!ran) return;
    // The first bucket whose bound is >= the time (Prometheus' le), else +Inf.
    const auto b = std::lower_bound(st.run.bounds.begin(), st.run.bounds.end(), *ran);
    ++st.run.counts[static_cast<std::size_t>(b - st.run.bounds.begin())];
    st.run.sum += *ran;
    ++st.run.count;
  }

  void trim_history_locked() {
    while (history.size() > opts.history_size) {
      auto old = std::move(history.front());
      history.pop_front();
      by_id.erase(old->id);
      // A done job is found in storage from now on.
      auto it = by_key.find(old->info.key);
      if (it != by_key.end() && it->second == old) by_key.erase(it);
    }
  }

  // Submits the job's pool task (under m). Throws what submit throws.
  TaskHandle<void> submit_locked(const JobPtr& job) {
    std::erase_if(tasks, [](const TaskHandle<void>& h) { return h.done(); });
    TaskOptions o{.priority = job->priority, .name = "job:" + job->info.type};
    auto h = supervisor_or_throw("Jobs").submit(
        o, [self = shared_from_this(), job](std::stop_token st) { self->run(job, st); });
    tasks.push_back(h);
    job->holds_slot = true;
    ++running;
    return h;
  }

  // Starts queued jobs while there are free slots (under m). Jobs that
  // cannot be submitted (the supervisor stopped) end failed.
  void start_queued_locked(Started& started, std::vector<JobPtr>& changed) {
    while (!closing && running < opts.max_running && !queue.empty()) {
      auto job = queue.front();
      queue.pop_front();
      try {
        started.emplace_back(job, submit_locked(job));
      } catch (...) {
        if (mark_finished_locked(job, JobStatus::failed, "canceled: " + describe_current_exception(), {}))
          changed.push_back(job);
      }
    }
  }

  // After m is released: watch the pool tasks (one that never runs, because
  // the supervisor dropped it, must still end its job) and tell followers.
  void after_unlock(Started& started, std::vector<JobPtr>& changed) {
    for (auto& j : changed) j->notify();
    for (auto& [job, h] : started) {
      auto* state = h.state_ptr();
      // The continuation runs inside the state's own member function (or
      // right here), so the raw pointer is alive while it runs.
      state->on_done([self = shared_from_this(), job, state] {
        std::string why = "canceled: the job's task ended before the job did";
        if (auto e = state->error()) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            why = std::string("canceled: ") + ex.what();
          } catch (...) {
          }
        }
        self->finish(job, JobStatus::failed, why, {});
      });
    }
  }

  void finish(const JobPtr& job, JobStatus status, const std::string& error, const fs::path& result) {
    Started started;
    std::vector<JobPtr> changed;
    {
      std::lock_guard lk(m);
      if (mark_finished_locked(job, status, error, result)) changed.push_back(job);
      start_queued_locked(started, changed);
    }
    after_unlock(started, changed);
  }

  // The pool task's body.
  void run(const JobPtr& job, std::stop_token task_stop) {
    if (stop.stop_requested()) return finish(job, JobStatus::failed, canceled_by_destructor, {});
    const auto info0 = job->snapshot();
    if (info0.finished()) return;
    const auto& key = info0.key;
    const auto out = store.temp_path(key, job->id);
    {
      std::ofstream f(out, std::ios::binary | std::ios::trunc);
      if (!f) return finish(job, JobStatus::failed, "Jobs - cannot create " + out.string(), {});
    }
    JobInfo started;
    job->update([&](JobInfo& i) {
      if (i.status != JobStatus::queued) return false;
      i.status = JobStatus::running;
      i.started_at = sys_clock::now();
      started = i;
      return true;
    });
    job->notify();

    // The executor's token: the task's own (a supervisor shutdown) or ours
    // (~Jobs), whichever comes first.
    std::stop_source job_stop;
    std::stop_callback from_task(task_stop, [&] { job_stop.request_stop(); });
    std::stop_callback from_jobs(stop.get_token(), [&] { job_stop.request_stop(); });

    std::string error;
    bool ok = false;
    ContextImpl ctx(*job, std::move(started), out, job_stop.get_token());
    try {
      (*job->fn)(ctx);
      ok = true;
    } catch (...) {
      error = describe_current_exception();
    }
    const auto result = store.result_path(key);
    if (ok) {
      try {
        store.store(key, job->id, info0.type, info0.params, out);
      } catch (...) {
        ok = false;
        error = "Jobs - cannot store the result: " + describe_current_exception();
      }
    }
    if (!ok) {
      std::error_code ec;
      fs::remove(out, ec);
      log->warn("job #{} '{}' ({}) failed: {}", job->id, info0.type, key, error);
    }
    finish(job, ok ? JobStatus::done : JobStatus::failed, error, ok ? result : fs::path{});
  }
};

// -- Jobs --------------------------------------------------------------------------------

Jobs::Jobs(Supervisor& sv, JobsOptions options) {
  if (options.storage_dir.empty()) throw OptionsError("Jobs::Jobs() - storage_dir is empty");
  if (options.max_running < 1)
    throw OptionsError("Jobs::Jobs() - max_running must be >= 1 (got " + std::to_string(options.max_running) +
                       ")");
  std::error_code ec;
  fs::create_directories(options.storage_dir, ec);
  if (ec || !fs::is_directory(options.storage_dir, ec))
    throw OptionsError("Jobs::Jobs() - cannot create storage_dir '" + options.storage_dir.string() +
                       "': " + (ec ? ec.message() : std::string("not a directory")));
  impl_ = std::make_shared<Impl>(sv, std::move(options));
}

Jobs::~Jobs() {
  auto& im = *impl_;
  std::vector<std::function<void()>> farewell;
  {
    std::lock_guard lk(im.m);
    farewell.swap(im.on_destroy);
  }
  for (auto& f : farewell) {
    try {
      f();
    } catch (...) {
    }
  }
  std::vector<Impl::JobPtr> changed;
  std::vector<TaskHandle<void>> tasks;
  {
    std::lock_guard lk(im.m);
    im.closing = true;
    const auto queued = im.queue;
    for (const auto& job : queued)
      if (im.mark_finished_locked(job, JobStatus::failed, canceled_by_destructor, {})) changed.push_back(job);
    im.queue.clear();
    tasks = im.tasks;
  }
  for (auto& j : changed) j->notify();
  im.stop.request_stop();
  for (auto& h : tasks) h.wait();
  // A task that ended without ending its job (abandoned by a cold shutdown,
  // or canceled with its continuation still on the way): end it here.
  changed.clear();
  {
    std::lock_guard lk(im.m);
    std::vector<Impl::JobPtr> open;
    for (auto& [id, job] : im.by_id)
      if (!job->snapshot().finished()) open.push_back(job);
    for (auto& job : open)
      if (im.mark_finished_locked(job, JobStatus::failed, canceled_by_destructor, {})) changed.push_back(job);
  }
  for (auto& j : changed) j->notify();
}

void Jobs::add_type(std::string name, JobFn fn, JobTypeOptions options) {
  if (!valid_type_name(name))
    throw OptionsError("Jobs::add_type() - bad type name '" + name + "' (use [A-Za-z0-9_.-]+)");
  if (!fn) throw OptionsError("Jobs::add_type() - empty executor for type '" + name + "'");
  std::lock_guard lk(impl_->m);
  if (impl_->types.contains(name))
    throw OptionsError("Jobs::add_type() - type '" + name + "' is already added");
  impl_->types.emplace(std::move(name), TypeEntry{std::make_shared<const JobFn>(std::move(fn)), options});
}

std::vector<std::string> Jobs::types() const {
  std::lock_guard lk(impl_->m);
  std::vector<std::string> out;
  out.reserve(impl_->types.size());
  for (const auto& [name, t] : impl_->types) out.push_back(name);
  return out;
}

bool Jobs::has_type(std::string_view name) const {
  std::lock_guard lk(impl_->m);
  return impl_->types.find(name) != impl_->types.end();
}

Job Jobs::ensure_run(std::string_view type, boost::json::object params) {
  auto& im = *impl_;
  const std::string key = key_of(type, params);

  // The identical job in memory: queued, running, or done with its result
  // still there.
  auto find_locked = [&]() -> std::optional<Job> {
    auto it = im.by_key.find(key);
    if (it == im.by_key.end()) return std::nullopt;
    const auto& job = it->second;
    bool gone = false;
    {
      std::lock_guard jl(job->m);
      if (job->info.status == JobStatus::done) {
        std::error_code ec;
        gone = !fs::is_regular_file(job->info.result_path, ec);
      }
    }
    if (!gone) return detail::JobAccess::make(job);
    im.by_key.erase(it);  // removed from storage behind our back: run it again
    return std::nullopt;
  };

  {
    std::lock_guard lk(im.m);
    if (im.types.find(type) == im.types.end())
      throw NotFoundError("Jobs::ensure_run() - no job type '" + std::string(type) + "'");
    if (auto j = find_locked()) return *j;
  }

  // Storage is read without the lock; what it finds is checked again below.
  const auto stored = im.store.find(key, type, params);

  Impl::Started started;
  std::vector<Impl::JobPtr> changed;
  std::optional<Job> out;
  {
    std::lock_guard lk(im.m);
    if (auto j = find_locked()) return *j;
    const auto& te = im.types.find(type)->second;
    JobInfo i;
    i.id = im.next_id;
    i.type = std::string(type);
    i.key = key;
    i.params = std::move(params);
    i.version = 1;
    if (stored) {
      ++im.next_id;
      i.status = JobStatus::done;
      i.fraction = 1;
      i.result_path = im.store.result_path(key);
      i.from_storage = true;
      i.finished_at = *stored;
      auto job = std::make_shared<JobImpl>(std::move(i), nullptr, te.options.priority);
      im.by_key.emplace(key, job);
      im.by_id.emplace(job->id, job);
      im.history.push_back(job);
      out = detail::JobAccess::make(job);
      im.trim_history_locked();
      return *out;
    }
    if (im.closing) throw LifecycleError("Jobs::ensure_run() - the Jobs object is being destroyed");
    Supervisor& sv = im.supervisor_or_throw("Jobs::ensure_run()");
    if (!sv.is_running())
      throw LifecycleError("Jobs::ensure_run() - supervisor '" + sv.id() + "' is not running");
    ++im.next_id;
    i.created_at = sys_clock::now();
    auto job = std::make_shared<JobImpl>(std::move(i), te.fn, te.options.priority);
    if (im.running < im.opts.max_running) {
      // Submitted before anyone else can see it: on failure nothing to undo.
      started.emplace_back(job, im.submit_locked(job));
    } else {
      im.queue.push_back(job);
    }
    im.by_key.emplace(key, job);
    im.by_id.emplace(job->id, job);
    out = detail::JobAccess::make(job);
  }
  im.after_unlock(started, changed);
  return *out;
}

std::optional<Job> Jobs::find(std::uint64_t id) const {
  std::lock_guard lk(impl_->m);
  auto it = impl_->by_id.find(id);
  if (it == impl_->by_id.end()) return std::nullopt;
  return detail::JobAccess::make(it->second);
}

std::vector<JobTypeStats> Jobs::finished_stats() const {
  std::lock_guard lk(impl_->m);
  std::vector<JobTypeStats> out;
  for (const auto& [name, entry] : impl_->types) {
    if (auto it = impl_->finished.find(name); it != impl_->finished.end()) {
      out.push_back(it->second);
      continue;
    }
    JobTypeStats st;
    st.type = name;
    st.run.bounds.assign(job_time_buckets.begin(), job_time_buckets.end());
    st.run.counts.assign(job_time_buckets.size() + 1, 0);
    out.push_back(std::move(st));
  }
  return out;
}

std::vector<JobInfo> Jobs::list() const {
  std::lock_guard lk(impl_->m);
  std::vector<JobInfo> out;
  out.reserve(impl_->by_id.size());
  for (const auto& [id, job] : impl_->by_id) {
    auto i = job->snapshot();
    if (!i.finished()) out.push_back(std::move(i));
  }
  for (const auto& job : impl_->history) out.push_back(job->snapshot());
  return out;
}

void Jobs::when_destroyed(std::function<void()> f) {
  std::lock_guard lk(impl_->m);
  impl_->on_destroy.push_back(std::move(f));
}

const JobsOptions& Jobs::options() const noexcept {
  return impl_->opts;
}

std::string Jobs::key_of(std::string_view type, const boost::json::object& params) {
  return detail::job_key(type, params);
}

}  // namespace atask
