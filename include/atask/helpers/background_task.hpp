#pragma once
/// @file
/// background_task(): the C++ form of atasker's @background_task decorator.
/// Wrap a callable once with its options; every call submits it.
///
/// @code
///   auto add = atask::background_task(sv, [](int a, int b) { return a + b; },
///                                     {.priority = atask::Priority::high});
///   atask::TaskHandle<int> t = add(2, 3);   // runs on the pool
///   auto fetch = atask::background_task(sv, [](std::string url) -> asio::awaitable<int> { ... });
///   auto h = fetch("x");                     // runs on the default aloop
/// @endcode

#include <atask/supervisor/supervisor.hpp>

#include <utility>

namespace atask {

/// A callable bound to a supervisor and task options.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe: calls may come from any
/// thread (the callable is copied into each task).
template <class F>
class BackgroundTask {
 public:
  BackgroundTask(Supervisor& sv, F f, TaskOptions o) : sv_(&sv), f_(std::move(f)), opts_(std::move(o)) {}

  /// Submits f(args...) with the bound options; returns its TaskHandle.
  template <class... Args>
  auto operator()(Args&&... args) const {
    return sv_->submit(opts_, f_, std::forward<Args>(args)...);
  }
  /// Same, with other options for this one call (atasker's `_priority=`).
  template <class... Args>
  auto with(const TaskOptions& o, Args&&... args) const {
    return sv_->submit(o, f_, std::forward<Args>(args)...);
  }

  const TaskOptions& options() const noexcept { return opts_; }

 private:
  Supervisor* sv_;
  F f_;
  TaskOptions opts_;
};

/// Wraps f for `sv` with `options`. A callable returning
/// boost::asio::awaitable<T> becomes a coroutine task on an aloop; any other
/// runs on the priority pool.
template <class F>
[[nodiscard]] BackgroundTask<std::decay_t<F>> background_task(Supervisor& sv, F&& f,
                                                              TaskOptions options = {}) {
  return {sv, std::forward<F>(f), std::move(options)};
}

}  // namespace atask
