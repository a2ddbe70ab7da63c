#include "supervisor/builtin_steps.hpp"

#include <atask/supervisor/detail/worker_registry.hpp>

#include "util/platform.hpp"
#include "process/process_pool.hpp"
#include "supervisor/aloop_set.hpp"
#include "supervisor/delay_queue.hpp"
#include "supervisor/options.hpp"
#include "supervisor/shutdown.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <utility>

namespace asio = boost::asio;

namespace atask::detail {

BuiltinSteps::BuiltinSteps(const SupervisorOptions& opt, std::shared_ptr<spdlog::logger> log,
                           asio::io_context& loop, ThreadPool& pool, ProcessPool* procs, AloopSet& aloops,
                           DelayQueue& delays, Shutdown& shutdown, const Lifecycle& life,
                           WorkerRegistry& workers)
    : opt_(opt),
      log_(std::move(log)),
      loop_(loop),
      pool_(pool),
      procs_(procs),
      aloops_(aloops),
      delays_(delays),
      shutdown_(shutdown),
      life_(life),
      workers_(workers) {}

std::vector<Step> BuiltinSteps::steps() {
  std::vector<Step> out;
  auto builtin = [&](const char* name, std::vector<std::string> deps, void (BuiltinSteps::*up)(),
                     void (BuiltinSteps::*down)()) {
    Step s{.name = name, .depends_on = std::move(deps), .start = {}, .stop = {}};
    if (up) s.start = [this, up](Supervisor&) { (this->*up)(); };
    if (down) s.stop = [this, down](Supervisor&) { (this->*down)(); };
    out.push_back(std::move(s));
  };
  // "pool" depends on "aloops" (and "processes") because its stop is the
  // staged shutdown of every task, coroutine and process ones included:
  // what runs them must outlive it.
  builtin("loop", {}, &BuiltinSteps::loop_start, &BuiltinSteps::loop_stop);
  builtin("aloops", {"loop"}, &BuiltinSteps::aloops_start, &BuiltinSteps::aloops_stop);
  if (procs_) {
    builtin("processes", {"loop"}, &BuiltinSteps::processes_start, &BuiltinSteps::processes_stop);
    builtin("pool", {"loop", "aloops", "processes"}, &BuiltinSteps::pool_start, &BuiltinSteps::pool_stop);
  } else {
    builtin("pool", {"loop", "aloops"}, &BuiltinSteps::pool_start, &BuiltinSteps::pool_stop);
  }
  builtin("workers", {"pool", "aloops"}, nullptr, &BuiltinSteps::workers_stop);
  return out;
}

void BuiltinSteps::loop_start() {
  work_.emplace(loop_.get_executor());
  if (opt_.handle_signals) shutdown_.listen_for_signals();
  thread_ = std::thread([this] {
    thread_id_.store(std::this_thread::get_id());
    set_thread_name(opt_.id + "-sv");
    for (;;) {
      try {
        loop_.run();
        return;
      } catch (...) {  // never let an exception take the loop down
        log_->error("{}: supervisor loop handler threw: {}", opt_.id, describe(std::current_exception()));
      }
    }
  });
  thread_id_.store(thread_.get_id());  // known once start() returns, not only once the thread runs
}

// Last: the stages of the "pool" step ran on this loop.
void BuiltinSteps::loop_stop() {
  asio::post(loop_, [this] {
    shutdown_.release_loop_objects();
    delays_.clear();
    work_.reset();
  });
  if (thread_.joinable()) thread_.join();
  thread_id_.store({});  // a joined thread's id may be given to a new thread
}

void BuiltinSteps::aloops_start() {
  aloops_.start_all();
}

// After "pool": coroutine tasks have been drained (or abandoned) by then;
// those still suspended end canceled when their aloop goes.
void BuiltinSteps::aloops_stop() {
  aloops_.stop_all();
}

void BuiltinSteps::processes_start() {
  procs_->start(loop_);
}

// After "pool": every process task has ended (or was abandoned) by then.
// The children and the fork server are killed and reaped.
void BuiltinSteps::processes_stop() {
  procs_->stop();
}

void BuiltinSteps::pool_start() {
  pool_.start();
  shutdown_.open();
}

// The staged shutdown of every task (warm, soft, cold on the loop), then
// the pool's threads end.
void BuiltinSteps::pool_stop() {
  shutdown_.close(true);
  const auto [reached, soft] = shutdown_.wait_drained();
  if (reached == StopStage::cold) {
    int left = pool_.abandon();
    if (left > 0) log_->error("{}: {} pool threads were left inside abandoned tasks", opt_.id, left);
    return;
  }
  // Fire-and-forget post()s are not in the registry; give them the soft budget.
  auto budget = forever(soft) ? std::chrono::hours(24) : soft;
  if (pool_.wait_idle(std::chrono::steady_clock::now() + budget)) {
    pool_.stop(QueuedTasks::cancel);
  } else {
    int left = pool_.abandon();
    log_->error("{}: {} posted tasks still running at shutdown were abandoned", opt_.id, left);
  }
}

// While the supervisor still takes work (a stop that can wait), workers
// finish their run and drain queues that drain, within the warm budget.
// Once it is closed they are only told to stop: their runs are tasks,
// which the stages bound.
void BuiltinSteps::workers_stop() {
  const bool open = life_.running();
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::now();
  if (open) deadline = shutdown_.warm_deadline();
  auto left = workers_.stop_all(deadline);
  if (open)
    for (auto& n : left) log_->warn("{}: worker '{}' did not stop within the warm stage", opt_.id, n);
}

}  // namespace atask::detail
