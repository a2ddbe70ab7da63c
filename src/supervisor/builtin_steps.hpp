#pragma once
// The supervisor's built-in steps: "loop" (the io_context thread, which it
// owns), "aloops", "processes" (with a process pool only), "pool" and
// "workers". Each hook forwards to the part it starts or stops.
//
// No lock of its own. Lock order: see the top of src/supervisor/supervisor.cpp.

#include <atask/supervisor/step.hpp>
#include <atask/supervisor/supervisor.hpp>

#include "supervisor/lifecycle.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace atask::detail {

class AloopSet;
class DelayQueue;
class ProcessPool;
class Shutdown;

class BuiltinSteps {
 public:
  /// `procs` is null without a process pool.
  BuiltinSteps(const SupervisorOptions& opt, std::shared_ptr<spdlog::logger> log,
               boost::asio::io_context& loop, ThreadPool& pool, ProcessPool* procs, AloopSet& aloops,
               DelayQueue& delays, Shutdown& shutdown, const Lifecycle& life, WorkerRegistry& workers);
  BuiltinSteps(const BuiltinSteps&) = delete;
  BuiltinSteps& operator=(const BuiltinSteps&) = delete;

  /// The steps, in registration order; their hooks refer to *this.
  std::vector<Step> steps();

  /// The caller is the loop thread.
  bool on_loop_thread() const noexcept { return std::this_thread::get_id() == thread_id_.load(); }

 private:
  void loop_start();
  void loop_stop();
  void aloops_start();
  void aloops_stop();
  void processes_start();
  void processes_stop();
  void pool_start();
  void pool_stop();
  void workers_stop();

  const SupervisorOptions& opt_;
  const std::shared_ptr<spdlog::logger> log_;
  boost::asio::io_context& loop_;
  ThreadPool& pool_;
  ProcessPool* const procs_;
  AloopSet& aloops_;
  DelayQueue& delays_;
  Shutdown& shutdown_;
  const Lifecycle& life_;
  WorkerRegistry& workers_;

  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
};

}  // namespace atask::detail
