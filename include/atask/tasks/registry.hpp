#pragma once
/// @file
/// TaskRegistry: named tasks. A name, a function or callable whose
/// arguments and result cross as Boost.JSON, and defaults (queue, priority,
/// how it runs). The same definition runs in this process (submit()) and -
/// with the distributed mode - on any worker of a cluster.
///
/// @code
///   int add(int a, int b) { return a + b; }
///
///   atask::TaskRegistry tasks;
///   tasks.add("add", [](int a, int b) { return a + b; });                // a pool thread
///   tasks.add("fetch", [](std::string url) -> asio::awaitable<std::string> { ... });   // a coroutine
///   tasks.add("crunch", atask::process(&crunch), {.priority = atask::Priority::high});  // a child process
///
///   atask::TaskHandle<boost::json::value> h = tasks.submit(sv, "add", {2, 3});
///   h.get();   // 5
/// @endcode
///
/// Arguments are a JSON array, one element per parameter, each converted
/// with boost::json::value_to (tag_invoke for user types); the result with
/// value_from (void gives null). A call with the wrong number or type of
/// arguments, or an unknown name, fails its task with a ConversionError or
/// NotFoundError that names the task: never a crash.

#include <atask/core/errors.hpp>
#include <atask/core/priority.hpp>
#include <atask/tasks/limits.hpp>
#include <atask/tasks/retry.hpp>
#include <atask/core/task_info.hpp>
#include <atask/process/process.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace atask {

/// The defaults of a named task; a call may override some of them.
struct NamedTaskOptions {
  /// The queue it is sent to in the distributed mode.
  std::string queue = "default";
  Priority priority = Priority::normal;
  /// Coroutine tasks: the aloop to run on (empty: the supervisor's default).
  /// OptionsError on a thread or process task.
  std::string aloop{};
  /// Distributed mode: the default time limit of a send (0: none; a send's
  /// own time_limit wins).
  std::chrono::milliseconds time_limit{0};
  /// Distributed mode: how a failed run is retried (a send's own retry
  /// wins). In-process submit() runs once whatever this says.
  RetryPolicy retry{};
  /// Distributed mode: at most so many starts per interval, and so many
  /// running at once, across the cluster (tasks/limits.hpp).
  TaskLimits limits{};
};

/// What one call may override.
struct CallOptions {
  std::optional<Priority> priority{};
  /// Wait this long before queueing (TaskOptions::delay).
  std::chrono::milliseconds delay{0};
  /// Queue no sooner than this time (TaskOptions::eta); setting both delay
  /// and eta is an OptionsError.
  std::optional<std::chrono::system_clock::time_point> eta{};
};

/// What the registry knows of one named task.
struct NamedTaskInfo {
  std::string name;
  TaskKind kind = TaskKind::thread;  ///< thread (pool), coroutine (aloop) or process (process pool)
  NamedTaskOptions options;
  std::size_t arity = 0;  ///< parameters
};

namespace detail {

template <class F>
struct callable_traits : callable_traits<decltype(&F::operator())> {};
template <class R, class... A>
struct callable_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};
template <class R, class... A>
struct callable_traits<R (*)(A...) noexcept> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const noexcept> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...)> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) noexcept> : callable_traits<R (*)(A...)> {};

/// The arguments of task `name` from a JSON array.
/// @throws ConversionError naming the task, the argument and the reason.
template <class Tuple>
Tuple decode_args(const std::string& name, const boost::json::array& a) {
  constexpr std::size_t n = std::tuple_size_v<Tuple>;
  if (a.size() != n)
    throw ConversionError("task '" + name + "': takes " + std::to_string(n) + " argument" +
                          (n == 1 ? "" : "s") + ", got " + std::to_string(a.size()));
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    auto one = [&]<std::size_t K>(std::integral_constant<std::size_t, K>) {
      using T = std::tuple_element_t<K, Tuple>;
      try {
        return boost::json::value_to<T>(a[K]);
      } catch (const std::exception& e) {
        throw ConversionError("task '" + name + "': argument " + std::to_string(K + 1) +
                              " does not convert: " + e.what());
      }
    };
    (void)one;  // unused for a task without parameters
    return Tuple(one(std::integral_constant<std::size_t, I>{})...);
  }
  (std::make_index_sequence<n>{});
}

template <class R>
boost::json::value encode_result(R&& r) {
  return boost::json::value_from(std::forward<R>(r));
}

/// Runs a coroutine task and gives its result as JSON. A coroutine on V
/// only, not on the user's callable (GCC 12 warns about coroutines
/// templated on a lambda type, -Wsubobject-linkage).
template <class V>
boost::asio::awaitable<boost::json::value> json_of(std::function<boost::asio::awaitable<V>()> start) {
  if constexpr (std::is_void_v<V>) {
    co_await start();
    co_return nullptr;
  } else {
    co_return boost::json::value_from(co_await start());
  }
}

template <class T>
struct awaitable_value;
template <class T, class E>
struct awaitable_value<boost::asio::awaitable<T, E>> {
  using type = T;
};

}  // namespace detail

/// Named tasks.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe (add() and the lookups
/// take a lock; a task's callable is called without it).
class TaskRegistry {
 public:
  TaskRegistry() = default;
  TaskRegistry(const TaskRegistry&) = delete;
  TaskRegistry& operator=(const TaskRegistry&) = delete;

  /// Registers a plain function or a callable: a pool-thread task, or a
  /// coroutine task when it returns boost::asio::awaitable<T>.
  /// @throws OptionsError for a taken or malformed name, or an aloop on a
  ///         thread task.
  template <class F>
  void add(std::string name, F f, NamedTaskOptions o = {}) {
    using Tr = detail::callable_traits<std::decay_t<F>>;
    using Args = typename Tr::args;
    using R = typename Tr::result;
    Entry e;
    e.info = {name, TaskKind::thread, std::move(o), std::tuple_size_v<Args>};
    if constexpr (detail::is_awaitable<R>::value) {
      using V = typename detail::awaitable_value<R>::type;
      e.info.kind = TaskKind::coroutine;
      e.coroutine = [f = std::move(f),
                     name](boost::json::array a) -> boost::asio::awaitable<boost::json::value> {
        // The decoded arguments live as long as the coroutine (a parameter
        // taken by reference refers to them).
        auto args = std::make_shared<Args>(detail::decode_args<Args>(name, a));
        return detail::json_of<V>([f, args] { return std::apply(f, *args); });
      };
    } else {
      e.thread = [f = std::move(f), name](const boost::json::array& a) -> boost::json::value {
        Args args = detail::decode_args<Args>(name, a);
        if constexpr (std::is_void_v<R>) {
          std::apply(f, std::move(args));
          return nullptr;
        } else {
          return detail::encode_result(std::apply(f, std::move(args)));
        }
      };
    }
    insert(std::move(e));
  }

  /// Registers a process function (atask::process(&fn)): each call runs in a
  /// child of the supervisor's process pool.
  /// @throws OptionsError for a taken or malformed name, or an aloop.
  template <class R, class... A>
  void add(std::string name, ProcessFn<R, A...> fn, NamedTaskOptions o = {}) {
    Entry e;
    e.info = {name, TaskKind::process, std::move(o), sizeof...(A)};
    e.process = [fn](std::string args_json) { return JsonProcessCall(fn, std::move(args_json)); };
    insert(std::move(e));
  }

  /// Moves every task of `from` here, all or nothing (plugins register into
  /// a registry of their own first).
  /// @throws OptionsError naming a task both have; nothing moved then.
  void merge(TaskRegistry& from);

  bool contains(std::string_view name) const;
  /// Every name, sorted.
  std::vector<std::string> names() const;
  std::optional<NamedTaskInfo> find(std::string_view name) const;

  /// Runs task `name` with `args` on `sv`, as a task named after it at its
  /// priority (or the call's). The handle fails with NotFoundError for an
  /// unknown name and ConversionError for arguments that do not fit.
  /// @throws LifecycleError when the supervisor is not running.
  [[nodiscard]] TaskHandle<boost::json::value> submit(Supervisor& sv, std::string_view name,
                                                      boost::json::array args, CallOptions o = {}) const;

 private:
  struct Entry {
    NamedTaskInfo info;
    std::function<boost::json::value(const boost::json::array&)> thread;
    std::function<boost::asio::awaitable<boost::json::value>(boost::json::array)> coroutine;
    std::function<JsonProcessCall(std::string)> process;
  };

  void insert(Entry e);

  mutable std::mutex m_;
  std::map<std::string, std::shared_ptr<const Entry>, std::less<>> entries_;
};

}  // namespace atask
