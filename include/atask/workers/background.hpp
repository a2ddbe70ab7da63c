#pragma once
/// @file
/// BackgroundWorker (blocking executor, run again and again on the pool) and
/// AsyncWorker (coroutine executor, run again and again on an aloop), and
/// the background_worker() factory.
///
/// @code
///   struct Poller : atask::BackgroundWorker {
///     using BackgroundWorker::BackgroundWorker;
///     bool run(atask::WorkerContext& ctx) override { poll_once(); return !ctx.stop_requested(); }
///   };
///   atask::AutoStop<Poller> p(sv, {.name = "poller"});
///   p.start();
///
///   auto w = atask::background_worker(sv, [](atask::WorkerContext&) { work(); });
///   w->start();
/// @endcode

#include <atask/workers/worker.hpp>

namespace atask {

/// Runs its executor again and again, each run a task on the priority pool
/// at the worker's priority (so other work interleaves between runs).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class BackgroundWorker : public Worker {
 public:
  explicit BackgroundWorker(Supervisor& sv, WorkerOptions o = {})
      : Worker(sv, Mode::background, false, detail::WorkerSettings::common(o)) {}

 protected:
  /// The executor. Return false to stop the worker.
  virtual bool run(WorkerContext& ctx) = 0;

 private:
  bool execute(WorkerContext& ctx) final {
    return guarded_call(ctx, [&] { return run(ctx); });
  }
};

/// BackgroundWorker with a coroutine executor, run on an aloop.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker.
class AsyncWorker : public Worker {
 public:
  explicit AsyncWorker(Supervisor& sv, WorkerOptions o = {})
      : Worker(sv, Mode::background, true, detail::WorkerSettings::common(o)) {}

 protected:
  /// The executor. co_return false to stop the worker.
  virtual boost::asio::awaitable<bool> run(WorkerContext& ctx) = 0;

 private:
  boost::asio::awaitable<bool> execute_async(WorkerContext& ctx) final {
    return guarded_call_async(ctx, [this, &ctx] { return run(ctx); });
  }
};

namespace detail {

template <class F, class... Args>
struct executor_result {
  using type = std::remove_cvref_t<decltype(call_with_context(
      std::declval<F&>(), std::declval<WorkerContext&>(), std::declval<Args&>()...))>;
};
template <class F, class... Args>
using executor_result_t = typename executor_result<F, Args...>::type;

inline boost::asio::awaitable<bool> true_after(boost::asio::awaitable<void> a) {
  co_await std::move(a);
  co_return true;
}

/// The awaitable<bool> for one call of a coroutine executor f (which returns
/// awaitable<void> or awaitable<bool>). Not a coroutine itself: a coroutine
/// templated on a user's lambda type makes GCC 12 warn (-Wsubobject-linkage)
/// in every file that uses a factory.
template <class F, class... Args>
boost::asio::awaitable<bool> await_executor(F& f, WorkerContext& ctx, Args&... args) {
  using A = executor_result_t<F, Args...>;
  static_assert(is_awaitable<A>::value,
                "atask: a coroutine executor returns boost::asio::awaitable<void|bool>");
  using V = typename is_awaitable<A>::value_type;
  static_assert(std::is_same_v<A, boost::asio::awaitable<V>>,
                "atask: a coroutine executor returns awaitable<void|bool> on the default executor type");
  if constexpr (std::is_void_v<V>) {
    return true_after(call_with_context(f, ctx, args...));
  } else {
    static_assert(std::is_same_v<V, bool>,
                  "atask: a coroutine executor returns awaitable<void> or awaitable<bool>");
    return call_with_context(f, ctx, args...);
  }
}

/// Calls a blocking executor; void counts as "go on".
template <class F, class... Args>
bool call_executor(F& f, WorkerContext& ctx, Args&... args) {
  if constexpr (std::is_void_v<executor_result_t<F, Args...>>) {
    call_with_context(f, ctx, args...);
    return true;
  } else {
    return keep_going(call_with_context(f, ctx, args...));
  }
}

/// A worker type built from a callable: Base is BackgroundWorker,
/// EventWorker or IntervalWorker. Final, so its destructor can stop the
/// worker before the callable goes.
template <class Base, class F>
class FnWorker final : public Base {
 public:
  template <class Options>
  FnWorker(Supervisor& sv, F f, Options o) : Base(sv, std::move(o)), f_(std::move(f)) {}
  ~FnWorker() override { this->stop(true); }

 private:
  bool run(WorkerContext& ctx) override { return call_executor(f_, ctx); }
  F f_;
};

/// The same for the coroutine forms (AsyncWorker, AsyncEventWorker, AsyncIntervalWorker).
template <class Base, class F>
class FnAsyncWorker final : public Base {
 public:
  template <class Options>
  FnAsyncWorker(Supervisor& sv, F f, Options o) : Base(sv, std::move(o)), f_(std::move(f)) {}
  ~FnAsyncWorker() override { this->stop(true); }

 private:
  boost::asio::awaitable<bool> run(WorkerContext& ctx) override { return await_executor(f_, ctx); }
  F f_;
};

}  // namespace detail

/// Builds a background worker from a callable taking (WorkerContext&) or ()
/// and returning void or bool (false stops the worker) - a BackgroundWorker
/// - or returning boost::asio::awaitable<void|bool> - an AsyncWorker on an
/// aloop. The worker is not started.
/// @throws OptionsError for a taken name, or for an `.aloop` when f is
///         blocking (it runs on the pool, never on an aloop).
template <class F>
[[nodiscard]] auto background_worker(Supervisor& sv, F f, WorkerOptions o = {}) {
  if constexpr (detail::is_awaitable<detail::executor_result_t<F>>::value)
    return std::unique_ptr<AsyncWorker>(
        new detail::FnAsyncWorker<AsyncWorker, F>(sv, std::move(f), std::move(o)));
  else
    return std::unique_ptr<BackgroundWorker>(
        new detail::FnWorker<BackgroundWorker, F>(sv, std::move(f), std::move(o)));
}

}  // namespace atask
