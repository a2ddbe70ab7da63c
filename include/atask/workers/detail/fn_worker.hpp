#pragma once
/// @file
/// The worker behind the factories (background_worker(), event_worker(),
/// interval_worker(), queue_worker()): a BasicWorker whose run() calls a
/// user's callable, and the helpers that call such a callable with or
/// without its WorkerContext.

#include <atask/core/detail/task_impl.hpp>
#include <atask/workers/basic_worker.hpp>

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <type_traits>
#include <utility>

namespace atask::detail {

/// Calls an executor callable with (args..., ctx) when it takes the context,
/// else with (args...).
template <class F, class... Args>
decltype(auto) call_with_context(F& f, WorkerContext& ctx, Args&... args) {
  if constexpr (std::is_invocable_v<F&, Args&..., WorkerContext&>)
    return std::invoke(f, args..., ctx);
  else if constexpr (std::is_invocable_v<F&, Args&...>)
    return std::invoke(f, args...);
  else
    static_assert(std::is_invocable_v<F&, Args&..., WorkerContext&>,
                  "atask: a worker executor must be callable with (item..., WorkerContext&) or (item...)");
}

/// A blocking executor's bool result: whether to go on.
template <class R>
bool keep_going(R&& r) {
  using T = std::remove_cvref_t<R>;
  static_assert(std::is_same_v<T, bool>, "atask: a blocking executor returns void or bool");
  return r;
}

template <class F, class... Args>
struct executor_result {
  using type = std::remove_cvref_t<decltype(call_with_context(
      std::declval<F&>(), std::declval<WorkerContext&>(), std::declval<Args&>()...))>;
};
template <class F, class... Args>
using executor_result_t = typename executor_result<F, Args...>::type;

/// The executor form a callable asks for: Coroutine when it returns an
/// awaitable, else Blocking.
template <class F, class... Args>
using form_of_t = std::conditional_t<is_awaitable<executor_result_t<F, Args...>>::value, Coroutine, Blocking>;

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

/// A worker built from a callable: Base is a BasicWorker, F its executor.
/// The factories create it through make_worker(), so it is stopped before
/// the callable goes.
template <class Base, class F, class Items = typename Base::items, bool = Base::form_type::coroutine>
class FnWorker;

template <class Base, class F, class... Items>
class FnWorker<Base, F, ItemList<Items...>, false> : public Base {
 public:
  FnWorker(WorkerInit init, F f, typename Base::options_type o)
      : Base(std::move(init), std::move(o)), f_(std::move(f)) {}

 private:
  bool run(Items... items, WorkerContext& ctx) override { return call_executor(f_, ctx, items...); }

  F f_;
};

template <class Base, class F, class... Items>
class FnWorker<Base, F, ItemList<Items...>, true> : public Base {
 public:
  FnWorker(WorkerInit init, F f, typename Base::options_type o)
      : Base(std::move(init), std::move(o)), f_(std::move(f)) {}

 private:
  // Not what the engine calls (start_call() is): for a subclass that calls it.
  boost::asio::awaitable<bool> run(Items... items, WorkerContext& ctx) override {
    if constexpr (sizeof...(Items) == 0)
      return await_executor(f_, ctx);
    else
      return run_item(std::move(items)..., ctx);
  }
  // A queue's item lives in this coroutine's frame while the executor uses it.
  boost::asio::awaitable<bool> run_item(Items... items, WorkerContext& ctx) {
    co_return co_await await_executor(f_, ctx, items...);
  }
  // The user's coroutine itself, on the items the engine keeps alive.
  CoroutineCall start_call(Items&... items, WorkerContext& ctx) override {
    using A = executor_result_t<F, Items...>;
    static_assert(is_awaitable<A>::value,
                  "atask: a coroutine executor returns boost::asio::awaitable<void|bool>");
    if constexpr (std::is_same_v<A, boost::asio::awaitable<void>>)
      return {{}, call_with_context(f_, ctx, items...)};
    else
      return {await_executor(f_, ctx, items...), {}};  // checks what A is
  }

  F f_;
};

/// make_worker<FnWorker<Base, F>>() as a unique_ptr<Base>.
template <class Base, class F>
std::unique_ptr<Base> make_fn_worker(Supervisor& sv, F f, typename Base::options_type o) {
  return make_worker<FnWorker<Base, F>>(sv, std::move(f), std::move(o));
}

}  // namespace atask::detail
