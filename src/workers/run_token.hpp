// The worker engine's run bookkeeping, shared by worker.cpp (the
// lifecycle: start, the staged stop, restart) and worker_runs.cpp (the
// runs: launching the executor on the pool or an aloop, the coroutine host,
// the end of a run).
#pragma once

#include <atask/workers/worker.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

namespace atask::detail {

// Lets callbacks that may outlive the worker (timer handlers, the end of a
// run) reach it safely: the worker's destructor clears `w` under `m`, and a
// callback holds `m` for as long as it uses the worker.
struct WorkerAnchor {
  explicit WorkerAnchor(Worker* worker) : w(worker) {}
  std::mutex m;
  Worker* w;
};

// Owned by the callable of one run. Its destruction - after the executor
// returned, or when the task is canceled before it starts (the pool stopped,
// the supervisor canceled queued work) - tells the worker the run is over.
// `armed` settles a race with the launcher: a run that ends before the
// launcher has recorded it (0 -> 2) is seen by the launcher itself.
//
// A coroutine worker's host task owns one too (`host`): the host settles its
// runs itself and sets `done` when it ends; the token reports only a host
// that never ran or whose coroutine was destroyed mid-way (its aloop went).
struct RunToken {
  RunToken(std::shared_ptr<WorkerAnchor> a, std::uint64_t g, std::shared_ptr<std::atomic<int>> arm,
           bool h = false)
      : anchor(std::move(a)), gen(g), armed(std::move(arm)), host(h) {}
  RunToken(const RunToken&) = delete;
  RunToken& operator=(const RunToken&) = delete;
  ~RunToken() {
    int expected = 0;
    if (armed->compare_exchange_strong(expected, 2)) return;
    if (done.load(std::memory_order_acquire)) return;
    std::lock_guard l(anchor->m);
    if (!anchor->w) return;
    if (host)
      anchor->w->host_lost(gen);
    else
      anchor->w->run_done(gen, keep);
  }
  std::shared_ptr<WorkerAnchor> anchor;
  std::uint64_t gen;
  std::shared_ptr<std::atomic<int>> armed;
  bool keep = true;
  const bool host;
  std::atomic<bool> done{false};
};

// What wakes a waiting host: a signal with room for one, so that a wake
// sent between the host's decision to wait (under the worker's mutex) and
// its receive is not lost. Owned by the host's coroutine frame: it goes
// with the frame, also when the aloop's context destroys a suspended one.
struct WorkerHost {
  explicit WorkerHost(boost::asio::any_io_executor ex) : wake(std::move(ex), 1) {}
  boost::asio::experimental::concurrent_channel<void(boost::system::error_code)> wake;
};

}  // namespace atask::detail
