#pragma once
/// @file
/// BasicWorker<Source, Form>: a source of work and an executor form put
/// together. Every worker type is one of these, named by an alias:
///
/// | source                 | Blocking (pool thread) | Coroutine (aloop)        |
/// |------------------------|------------------------|--------------------------|
/// | LoopSource             | BackgroundWorker       | AsyncWorker              |
/// | TriggerSource          | EventWorker            | AsyncEventWorker         |
/// | ScheduleSource         | IntervalWorker         | AsyncIntervalWorker      |
/// | QueueSource<T, C>      | QueueWorker<T, C>      | AsyncQueueWorker<T, C>   |
///
/// The source decides when a run begins and what it gets (nothing, or the
/// queued items); the form decides what the executor `run()` returns: bool
/// on a pool thread at the worker's priority, or awaitable<bool> on an aloop.
/// A subclass overrides run() and inherits the constructor with
/// `using BasicWorker::BasicWorker;`; it is created by make_worker<W>() or
/// AutoStop<W> (see WorkerInit).

#include <atask/workers/worker.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <optional>
#include <type_traits>

namespace atask {

/// Executor form: run() returns bool and runs on a pool thread at the
/// worker's priority.
struct Blocking {
  static constexpr bool coroutine = false;
};
/// Executor form: run() returns boost::asio::awaitable<bool> and runs on an
/// aloop (WorkerOptions::aloop, or the supervisor's default aloop).
struct Coroutine {
  static constexpr bool coroutine = true;
};

namespace detail {

/// What one executor call gets besides its WorkerContext: nothing, or a
/// queue's item.
template <class... Items>
struct ItemList {};

/// One call of a coroutine executor as the engine awaits it: the
/// executor's own awaitable, of bool, or of void (`done`; void means go
/// on), with no coroutine frame of the engine's in between.
struct CoroutineCall {
  boost::asio::awaitable<bool> result{};
  boost::asio::awaitable<void> done{};
};

/// The executor part of BasicWorker, one per form: declares run() and calls
/// it for each run the source begins (per item, for a queue).
template <class Source, class Form, class Items>
class Executor;

template <class Source, class... Items>
class Executor<Source, Blocking, ItemList<Items...>> : public Source {
 protected:
  using Source::Source;

  /// The executor, once per run (per item for a queue). Return false to
  /// stop the worker.
  virtual bool run(Items... items, WorkerContext& ctx) = 0;

 private:
  bool execute(WorkerContext& ctx) final {
    if constexpr (sizeof...(Items) == 0) {
      return this->guarded_call(ctx, [&] { return run(ctx); });
    } else {
      for (std::size_t n = 0;; ++n) {
        auto item = this->next_item(n);
        if (!item) return true;
        if (!this->guarded_call(ctx, [&] { return run(std::move(*item), ctx); })) return false;
      }
    }
  }
};

template <class Source, class... Items>
class Executor<Source, Coroutine, ItemList<Items...>> : public Source {
 protected:
  using Source::Source;

  /// The executor, once per run (per item for a queue). co_return false to
  /// stop the worker.
  virtual boost::asio::awaitable<bool> run(Items... items, WorkerContext& ctx) = 0;

  /// Begins one call with `items`, which stay alive (in the engine's frame)
  /// until the call is over. The default moves them into run(); the
  /// factories' worker calls the user's coroutine directly (no frame to
  /// own the item, none to turn void into true).
  virtual CoroutineCall start_call(Items&... items, WorkerContext& ctx) {
    return {run(std::move(items)..., ctx), {}};
  }

 private:
  boost::asio::awaitable<bool> execute_async(WorkerContext& ctx) final {
    if constexpr (sizeof...(Items) == 0)
      return one_call(ctx);
    else
      return each_item(ctx);
  }

  // guarded_call_async() written out: one coroutine frame less per call.
  boost::asio::awaitable<bool> one_call(WorkerContext& ctx) {
    this->call_started();
    std::exception_ptr e;
    bool keep = false;
    try {
      CoroutineCall c = start_call(ctx);
      if (c.done.valid()) {
        co_await std::move(c.done);
        keep = true;
      } else {
        keep = co_await std::move(c.result);
      }
    } catch (...) {
      e = std::current_exception();
    }
    if (e) co_return this->call_ended(e, &ctx);
    this->call_ended(nullptr);
    co_return keep;
  }

  // guarded_call_async() written out: no coroutine frame of the engine's per item.
  boost::asio::awaitable<bool> each_item(WorkerContext& ctx) {
    for (std::size_t n = 0;; ++n) {
      auto item = this->next_item(n);
      if (!item) co_return true;
      this->call_started();
      std::exception_ptr e;
      bool keep = false;
      try {
        CoroutineCall c = start_call(*item, ctx);
        if (c.done.valid()) {
          co_await std::move(c.done);
          keep = true;
        } else {
          keep = co_await std::move(c.result);
        }
      } catch (...) {
        e = std::current_exception();
      }
      if (e) {
        if (!this->call_ended(e, &ctx)) co_return false;
      } else {
        this->call_ended(nullptr);
        if (!keep) co_return false;
      }
    }
  }
};

}  // namespace detail

/// A worker: Source's work, run by an executor of form Form (Blocking or
/// Coroutine). Subclass it through its alias (BackgroundWorker, ...) and
/// override `run`.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker and Source.
template <class Source, class Form = Blocking>
class BasicWorker : public detail::Executor<Source, Form, typename Source::items> {
  using Base = detail::Executor<Source, Form, typename Source::items>;

 public:
  /// The options struct of this kind (WorkerOptions, IntervalOptions, QueueOptions<T>).
  using options_type = typename Source::options_type;
  using form_type = Form;
  using source_type = Source;

  /// @throws OptionsError for bad options, a taken name, or an aloop on a
  ///         blocking executor (it runs on the pool, never on an aloop).
  explicit BasicWorker(WorkerInit init, options_type options = {})
      : Base(std::move(init), Form::coroutine, std::move(options)) {}
};

}  // namespace atask
