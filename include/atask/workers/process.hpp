#pragma once
/// @file
/// Workers whose executor runs in the process pool - atasker's
/// multiprocessing executor. The executor is a static function (it runs in
/// a child, with no access to the worker); each result comes back to the
/// parent through process_result(result), and returning false from it stops
/// the worker. One executor run at a time, as for every worker.
///
/// @code
///   // Subclass: the executor is `static R run_in_child(...)`.
///   struct Counter : atask::ProcessWorker<Counter, atask::IntervalWorker> {   // or AsyncIntervalWorker
///     using ProcessWorker::ProcessWorker;
///     static int run_in_child() { return expensive(); }
///     bool process_result(int r) { total += r; return true; }
///     std::atomic<int> total{0};
///   };
///   auto c = atask::make_worker<Counter>(sv, {.interval = 1s});
///
///   // Factory: a process function and a result callback.
///   auto w = atask::interval_worker(sv, atask::process(&expensive),
///                                   [&](int r) { total += r; }, {.interval = 1s});
/// @endcode
///
/// A run is a coroutine on the worker's aloop that submits the process task
/// at the worker's priority and awaits it, so no pool thread waits for the
/// child; process_result runs on that aloop's thread: keep it short. A
/// failed process task (an exception in the child, a crash, a time limit)
/// is the run's error: it goes to on_error and counts for stop_after_errors.
/// Stopping the worker requests the running task's stop
/// (this_task::stop_requested() in the child) and waits for it.

#include <atask/process/process.hpp>
#include <atask/workers/background.hpp>
#include <atask/workers/event.hpp>
#include <atask/workers/interval.hpp>
#include <atask/workers/queue.hpp>

#include <functional>
#include <stop_token>
#include <type_traits>

namespace atask {

namespace detail {

/// The coroutine of one process run (src/workers/process_worker.cpp): waits for the
/// task without blocking a thread, requests its stop when `st` is
/// requested, then returns deliver().
boost::asio::awaitable<bool> await_process(TaskStateBase& task, std::stop_token st,
                                           std::function<bool()> deliver);

/// Submits fn(args...) at the worker's priority and returns the run's
/// awaitable; on_result(result[, ctx]) says whether to go on.
template <class R, class... A, class OnResult, class... Args>
boost::asio::awaitable<bool> run_in_process(Worker& w, const ProcessFn<R, A...>& fn, WorkerContext& ctx,
                                            OnResult on_result, Args&&... args) {
  TaskHandle<R> h = w.supervisor().submit(TaskOptions{.priority = w.priority(), .name = ctx.name}, fn,
                                          std::forward<Args>(args)...);
  return await_process(*h.state_ptr(), ctx.stop_token, [h, on_result, &ctx]() mutable -> bool {
    if constexpr (std::is_void_v<R>) {
      h.get();
      return call_executor(on_result, ctx);
    } else {
      R value = h.get();
      return call_executor(on_result, ctx, value);
    }
  });
}

/// Calls Derived::process_result(result) and says whether to go on.
template <class Derived, class R>
struct ResultTo {
  Derived* d;
  bool operator()(R& r) const {
    if constexpr (std::is_void_v<decltype(d->process_result(r))>) {
      d->process_result(r);
      return true;
    } else {
      return keep_going(d->process_result(r));
    }
  }
};
template <class Derived>
struct ResultTo<Derived, void> {
  Derived* d;
  bool operator()() const {
    if constexpr (std::is_void_v<decltype(d->process_result())>) {
      d->process_result();
      return true;
    } else {
      return keep_going(d->process_result());
    }
  }
};

/// The coroutine form a process run needs (it awaits the child), from the
/// worker type a user names: BackgroundWorker/AsyncWorker -> AsyncWorker, and
/// so on.
template <class W>
struct process_base {
  static_assert(dependent_false<W>,
                "atask::ProcessWorker<Derived, Base>: Base must be BackgroundWorker, EventWorker, "
                "IntervalWorker, QueueWorker<T> or their Async* forms");
};
template <class Source, class Form>
struct process_base<BasicWorker<Source, Form>> {
  using type = BasicWorker<Source, Coroutine>;
};
template <class W>
using process_base_t = typename process_base<W>::type;

/// The run() of a process worker subclass: Derived::run_in_child(items...)
/// in a child, Derived::process_result(result) in the parent.
template <class Derived, class Async, class Items = typename Async::items>
class ProcessRun;

template <class Derived, class Async, class... Items>
class ProcessRun<Derived, Async, ItemList<Items...>> : public Async {
 public:
  using Async::Async;

 private:
  boost::asio::awaitable<bool> run(Items... items, WorkerContext& ctx) final {
    using R = decltype(Derived::run_in_child(std::declval<Items>()...));
    return run_in_process(*this, atask::process(&Derived::run_in_child), ctx,
                          ResultTo<Derived, R>{static_cast<Derived*>(this)}, std::move(items)...);
  }
};

/// A worker whose run() submits fn(items...) to the process pool and hands
/// the result to on_result: what the process factories build.
template <class Base, class P, class OnResult, class Items = typename Base::items>
class FnProcessWorker;

template <class Base, class P, class OnResult, class... Items>
class FnProcessWorker<Base, P, OnResult, ItemList<Items...>> : public Base {
 public:
  FnProcessWorker(WorkerInit init, P fn, OnResult r, typename Base::options_type o)
      : Base(std::move(init), std::move(o)), fn_(std::move(fn)), on_result_(std::move(r)) {}

 private:
  boost::asio::awaitable<bool> run(Items... items, WorkerContext& ctx) override {
    return run_in_process(*this, fn_, ctx, std::ref(on_result_), std::move(items)...);
  }
  P fn_;
  OnResult on_result_;
};

template <class Base, class P, class OnResult>
std::unique_ptr<Base> make_process_worker(Supervisor& sv, P fn, OnResult r, typename Base::options_type o) {
  return make_worker<FnProcessWorker<Base, P, OnResult>>(sv, std::move(fn), std::move(r), std::move(o));
}

}  // namespace detail

/// A worker with a process executor, by subclassing (CRTP). Base names the
/// worker type: BackgroundWorker, EventWorker, IntervalWorker or
/// QueueWorker<T>, or their coroutine forms. Either name gives the
/// coroutine form (the run awaits the child, holding no pool thread), so
/// ProcessWorker<Me, IntervalWorker> is an AsyncIntervalWorker and takes
/// IntervalOptions. Derived declares
///   static R run_in_child();          // runs in a child process (queues: run_in_child(T item))
///   bool process_result(R result);    // or void; runs in the parent
/// (for R = void: process_result()), inherits the constructor with
/// `using ProcessWorker::ProcessWorker;` and is created by make_worker().
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Base.
template <class Derived, class Base>
class ProcessWorker : public detail::ProcessRun<Derived, detail::process_base_t<Base>> {
 public:
  using detail::ProcessRun<Derived, detail::process_base_t<Base>>::ProcessRun;
};

/// ProcessWorker<Derived, QueueWorker<T, Compare>>, by its item type: each
/// item is the argument of `static R run_in_child(T item)`.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as AsyncQueueWorker.
template <class Derived, class T, class Compare = std::less<>>
class ProcessQueueWorker : public ProcessWorker<Derived, AsyncQueueWorker<T, Compare>> {
 public:
  using ProcessWorker<Derived, AsyncQueueWorker<T, Compare>>::ProcessWorker;
};

/// A background worker whose executor runs in the process pool: fn() again
/// and again, each result handed to on_result(result[, ctx]) (void or bool:
/// false stops the worker).
template <class R, class... A, class OnResult>
[[nodiscard]] auto background_worker(Supervisor& sv, ProcessFn<R, A...> fn, OnResult on_result,
                                     WorkerOptions o = {}) {
  return detail::make_process_worker<AsyncWorker>(sv, std::move(fn), std::move(on_result), std::move(o));
}

/// An event worker whose executor runs in the process pool.
template <class R, class... A, class OnResult>
[[nodiscard]] auto event_worker(Supervisor& sv, ProcessFn<R, A...> fn, OnResult on_result,
                                WorkerOptions o = {}) {
  return detail::make_process_worker<AsyncEventWorker>(sv, std::move(fn), std::move(on_result), std::move(o));
}

/// An interval worker whose executor runs in the process pool.
template <class R, class... A, class OnResult>
[[nodiscard]] auto interval_worker(Supervisor& sv, ProcessFn<R, A...> fn, OnResult on_result,
                                   IntervalOptions o) {
  return detail::make_process_worker<AsyncIntervalWorker>(sv, std::move(fn), std::move(on_result),
                                                          std::move(o));
}

/// A queue worker whose executor runs in the process pool: each item is
/// fn's argument.
template <class T, class Compare = std::less<>, class R, class... A, class OnResult>
[[nodiscard]] auto queue_worker(Supervisor& sv, ProcessFn<R, A...> fn, OnResult on_result,
                                QueueOptions<T> o = {}) {
  return detail::make_process_worker<AsyncQueueWorker<T, Compare>>(sv, std::move(fn), std::move(on_result),
                                                                   std::move(o));
}

}  // namespace atask
