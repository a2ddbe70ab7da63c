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
///   atask::AutoStop<Counter> c(sv, atask::IntervalOptions{.interval = 1s});
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

#include <atask/workers/background.hpp>
#include <atask/workers/event.hpp>
#include <atask/workers/interval.hpp>
#include <atask/process/process.hpp>
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
/// so on. Anything else is left as it is, for the static_assert to name.
template <class W>
struct process_base {
  using type = W;
};
template <>
struct process_base<BackgroundWorker> {
  using type = AsyncWorker;
};
template <>
struct process_base<EventWorker> {
  using type = AsyncEventWorker;
};
template <>
struct process_base<IntervalWorker> {
  using type = AsyncIntervalWorker;
};
template <class W>
using process_base_t = typename process_base<W>::type;

template <class W>
inline constexpr bool is_async_worker_base =
    std::is_same_v<W, AsyncWorker> || std::is_same_v<W, AsyncEventWorker> ||
    std::is_same_v<W, AsyncIntervalWorker>;

}  // namespace detail

/// A worker with a process executor, by subclassing (CRTP). Base names the
/// worker type: BackgroundWorker, EventWorker or IntervalWorker, or their
/// coroutine forms AsyncWorker, AsyncEventWorker, AsyncIntervalWorker. Either
/// name gives the coroutine form (the run awaits the child, holding no pool
/// thread), so ProcessWorker<Me, IntervalWorker> is an AsyncIntervalWorker
/// and takes IntervalOptions. For queues: ProcessQueueWorker<Me, T>, or
/// ProcessWorker<Me, QueueWorker<T>> (or AsyncQueueWorker<T>), the same
/// type. Derived declares
///   static R run_in_child();          // runs in a child process
///   bool process_result(R result);    // or void; runs in the parent
/// (for R = void: process_result()).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Base.
template <class Derived, class Base>
class ProcessWorker : public detail::process_base_t<Base> {
  using Async = detail::process_base_t<Base>;
  static_assert(detail::is_async_worker_base<Async>,
                "atask::ProcessWorker<Derived, Base>: Base must be BackgroundWorker, EventWorker, "
                "IntervalWorker, QueueWorker<T> or their Async* forms");

 public:
  using Async::Async;

 private:
  boost::asio::awaitable<bool> run(WorkerContext& ctx) final {
    using R = decltype(Derived::run_in_child());
    return detail::run_in_process(*this, atask::process(&Derived::run_in_child), ctx,
                                  detail::ResultTo<Derived, R>{static_cast<Derived*>(this)});
  }
};

/// A queue worker with a process executor: each item is the argument of
///   static R run_in_child(T item);
///   bool process_result(R result);    // or void
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as AsyncQueueWorker.
template <class Derived, class T, class Compare = std::less<>>
class ProcessQueueWorker : public AsyncQueueWorker<T, Compare> {
 public:
  using AsyncQueueWorker<T, Compare>::AsyncQueueWorker;

 private:
  boost::asio::awaitable<bool> run(T item, WorkerContext& ctx) final {
    using R = decltype(Derived::run_in_child(std::declval<T>()));
    return detail::run_in_process(*this, atask::process(&Derived::run_in_child), ctx,
                                  detail::ResultTo<Derived, R>{static_cast<Derived*>(this)}, std::move(item));
  }
};

/// ProcessWorker<Derived, QueueWorker<T, Compare>> (or AsyncQueueWorker):
/// ProcessQueueWorker<Derived, T, Compare>, by the worker type's name.
template <class Derived, class T, class Compare>
class ProcessWorker<Derived, QueueWorker<T, Compare>> : public ProcessQueueWorker<Derived, T, Compare> {
 public:
  using ProcessQueueWorker<Derived, T, Compare>::ProcessQueueWorker;
};
template <class Derived, class T, class Compare>
class ProcessWorker<Derived, AsyncQueueWorker<T, Compare>> : public ProcessQueueWorker<Derived, T, Compare> {
 public:
  using ProcessQueueWorker<Derived, T, Compare>::ProcessQueueWorker;
};

namespace detail {

template <class Base, class P, class OnResult>
class FnProcessWorker final : public Base {
 public:
  template <class Options>
  FnProcessWorker(Supervisor& sv, P fn, OnResult r, Options o)
      : Base(sv, std::move(o)), fn_(std::move(fn)), on_result_(std::move(r)) {}
  ~FnProcessWorker() override { this->stop(true); }

 private:
  boost::asio::awaitable<bool> run(WorkerContext& ctx) override {
    return run_in_process(*this, fn_, ctx, std::ref(on_result_));
  }
  P fn_;
  OnResult on_result_;
};

template <class T, class Compare, class P, class OnResult>
class FnProcessQueueWorker final : public AsyncQueueWorker<T, Compare> {
 public:
  FnProcessQueueWorker(Supervisor& sv, P fn, OnResult r, QueueOptions<T> o)
      : AsyncQueueWorker<T, Compare>(sv, std::move(o)), fn_(std::move(fn)), on_result_(std::move(r)) {}
  ~FnProcessQueueWorker() override { this->stop(true); }

 private:
  boost::asio::awaitable<bool> run(T item, WorkerContext& ctx) override {
    return run_in_process(*this, fn_, ctx, std::ref(on_result_), std::move(item));
  }
  P fn_;
  OnResult on_result_;
};

}  // namespace detail

/// A background worker whose executor runs in the process pool: fn() again
/// and again, each result handed to on_result(result[, ctx]) (void or bool:
/// false stops the worker).
template <class R, class... A, class OnResult>
[[nodiscard]] auto background_worker(Supervisor& sv, ProcessFn<R, A...> fn, OnResult on_result,
                                     WorkerOptions o = {}) {
  return std::unique_ptr<AsyncWorker>(new detail::FnProcessWorker<AsyncWorker, ProcessFn<R, A...>, OnResult>(
      sv, std::move(fn), std::move(on_result), std::move(o)));
}

/// An event worker whose executor runs in the process pool.
template <class R, class... A, class OnResult>
[[nodiscard]] auto event_worker(Supervisor& sv, ProcessFn<R, A...> fn, OnResult on_result,
                                WorkerOptions o = {}) {
  return std::unique_ptr<AsyncEventWorker>(
      new detail::FnProcessWorker<AsyncEventWorker, ProcessFn<R, A...>, OnResult>(
          sv, std::move(fn), std::move(on_result), std::move(o)));
}

/// An interval worker whose executor runs in the process pool.
template <class R, class... A, class OnResult>
[[nodiscard]] auto interval_worker(Supervisor& sv, ProcessFn<R, A...> fn, OnResult on_result,
                                   IntervalOptions o) {
  return std::unique_ptr<AsyncIntervalWorker>(
      new detail::FnProcessWorker<AsyncIntervalWorker, ProcessFn<R, A...>, OnResult>(
          sv, std::move(fn), std::move(on_result), std::move(o)));
}

/// A queue worker whose executor runs in the process pool: each item is
/// fn's argument.
template <class T, class Compare = std::less<>, class R, class... A, class OnResult>
[[nodiscard]] auto queue_worker(Supervisor& sv, ProcessFn<R, A...> fn, OnResult on_result,
                                QueueOptions<T> o = {}) {
  return std::unique_ptr<AsyncQueueWorker<T, Compare>>(
      new detail::FnProcessQueueWorker<T, Compare, ProcessFn<R, A...>, OnResult>(
          sv, std::move(fn), std::move(on_result), std::move(o)));
}

}  // namespace atask
