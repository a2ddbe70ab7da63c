#pragma once
/// @file
/// Background workers: LoopSource (run again and again), BackgroundWorker
/// (blocking executor on the pool) and AsyncWorker (coroutine executor on an
/// aloop), and the background_worker() factory.
///
/// @code
///   struct Poller : atask::BackgroundWorker {
///     using BasicWorker::BasicWorker;
///     bool run(atask::WorkerContext& ctx) override { poll_once(); return !ctx.stop_requested(); }
///   };
///   auto p = atask::make_worker<Poller>(sv, {.name = "poller"});
///   p->start();
///
///   auto w = atask::background_worker(sv, [](atask::WorkerContext&) { work(); });
///   w->start();
/// @endcode

#include <atask/workers/basic_worker.hpp>
#include <atask/workers/detail/fn_worker.hpp>

namespace atask {

/// The source of a background worker: a run begins as soon as the previous
/// one returned, each run a task of its own (so other work interleaves).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class LoopSource : public Worker {
 public:
  using options_type = WorkerOptions;
  using items = detail::ItemList<>;

 protected:
  LoopSource(WorkerInit init, bool coroutine, WorkerOptions o)
      : Worker(std::move(init), WorkerKind::background, coroutine, detail::WorkerSettings::common(o)) {}

 private:
  bool take_run_locked() override { return true; }
};

/// Runs its executor `bool run(WorkerContext&)` again and again on the
/// priority pool at the worker's priority.
using BackgroundWorker = BasicWorker<LoopSource, Blocking>;
/// BackgroundWorker with a coroutine executor
/// `awaitable<bool> run(WorkerContext&)` on an aloop.
using AsyncWorker = BasicWorker<LoopSource, Coroutine>;

/// Builds a background worker from a callable taking (WorkerContext&) or ()
/// and returning void or bool (false stops the worker) - a BackgroundWorker
/// - or returning boost::asio::awaitable<void|bool> - an AsyncWorker on an
/// aloop. The worker is not started.
/// @throws OptionsError for a taken name, or for an `.aloop` when f is
///         blocking (it runs on the pool, never on an aloop).
template <class F>
[[nodiscard]] auto background_worker(Supervisor& sv, F f, WorkerOptions o = {}) {
  return detail::make_fn_worker<BasicWorker<LoopSource, detail::form_of_t<F>>>(sv, std::move(f),
                                                                               std::move(o));
}

}  // namespace atask
