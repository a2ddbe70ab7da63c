#pragma once
/// @file
/// Process tasks: a plain function run in a child of the supervisor's
/// process pool, its arguments and result carried as Boost.JSON.
///
/// @code
///   int square(int x) { return x * x; }
///
///   atask::Supervisor sv({.processes = {.pool_size = 2}});
///   sv.start();
///   atask::TaskHandle<int> t = sv.submit({}, atask::process(&square), 7);
///   assert(t.get() == 49);
///   auto sq = atask::background_task(sv, atask::process(&square, {.time_limit = 2s}));
///   assert(sq(8).get() == 64);
/// @endcode
///
/// The function runs in a child forked from the supervisor's fork server, a
/// single-threaded copy of the program made when the supervisor was
/// constructed: it sees the program's code and the globals as they were
/// then, not the parent's later state. Its arguments and result cross the
/// process boundary as JSON: any type Boost.JSON converts (numbers, bool,
/// strings, containers, maps, optional, ...) or a user type with
/// tag_invoke overloads for value_from and value_to. docs/processes.md has
/// the whole story: crashes, time limits, cancellation, shutdown.

#include <atask/process/detail/json_check.hpp>
#include <atask/process/detail/process_job.hpp>
#include <atask/core/errors.hpp>
#include <atask/core/priority.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace atask {

/// Time limits of one process function (0 = the pool's default, see
/// ProcessPoolOptions).
struct ProcessLimits {
  /// Hard: past it the child is killed (and replaced) and the task fails
  /// with TimeLimitExceeded.
  std::chrono::milliseconds time_limit{0};
  /// Soft: past it this_task::stop_requested() is true in the child.
  std::chrono::milliseconds soft_time_limit{0};
};

namespace detail {

template <class>
inline constexpr bool dependent_false = false;

/// True for a function pointer, a function, and a lambda without captures.
template <class F, class = void>
struct is_plain_function : std::false_type {};
template <class F>
struct is_plain_function<F, std::void_t<decltype(+std::declval<F&>())>>
    : std::bool_constant<std::is_pointer_v<decltype(+std::declval<F&>())> &&
                         std::is_function_v<std::remove_pointer_t<decltype(+std::declval<F&>())>>> {};

template <class T>
struct json_convertible {
  static constexpr bool from = boost::json::has_value_from<T>::value;
  static constexpr bool to = boost::json::has_value_to<T>::value;
};

template <class R, class... A>
std::string process_entry(void (*fn)(), std::string_view args) {
  auto f = reinterpret_cast<R (*)(A...)>(fn);
  const boost::json::value v = boost::json::parse(args);
  const boost::json::array& a = v.as_array();
  if (a.size() != sizeof...(A))
    throw std::invalid_argument("atask: the child got " + std::to_string(a.size()) + " arguments for " +
                                std::to_string(sizeof...(A)) + " parameters");
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    if constexpr (std::is_void_v<R>) {
      f(boost::json::value_to<std::decay_t<A>>(a[I])...);
      return std::string("null");
    } else {
      const boost::json::value r =
          boost::json::value_from(f(boost::json::value_to<std::decay_t<A>>(a[I])...));
      if (std::string why = check_sendable(r, "result", "from a child process"); !why.empty())
        throw UnsendableResult(why);
      return boost::json::serialize(r);
    }
  }
  (std::index_sequence_for<A...>{});
}

/// A process task: the parent's side of one call.
template <class R>
class ProcessTask final : public TaskState<R>, public ProcessJob {
 public:
  ProcessTask(std::uint64_t id, Priority p, std::string name, ProcessEntry entry, void (*fn)(),
              std::string args, const ProcessLimits& l)
      : TaskState<R>(id, p, TaskKind::process, std::move(name)),
        ProcessJob(entry, fn, std::move(args), l.time_limit, l.soft_time_limit) {}

  void run() override {}  // never on the thread pool
  TaskStateBase& task() noexcept override { return *this; }

  void deliver(std::string_view json) noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        this->finish_value();
      } else {
        const boost::json::value v = boost::json::parse(json);
        this->finish_value(boost::json::value_to<R>(v));
      }
    } catch (const std::exception& e) {
      this->finish_error(std::make_exception_ptr(
          ProcessError("task #" + std::to_string(this->id()) +
                       ": its result does not convert to the function's return type: " + e.what())));
    }
  }

  void fail(std::exception_ptr e, bool canceled) noexcept override {
    if (canceled)
      this->finish_canceled(std::move(e));
    else
      this->finish_error(std::move(e));
  }

  void request_stop() noexcept override {
    TaskStateBase::request_stop();
    if (pool) process_request_stop(*pool, *this);
  }

 private:
  ~ProcessTask() override = default;
  bool cancel_started() noexcept override {
    TaskStateBase::request_stop();
    return pool && process_cancel_running(*pool, *this);
  }
  void drop_unstarted() noexcept override {
    if (pool) process_remove_queued(*pool, *this);
  }
  bool claim_unstarted() noexcept override { return !pool || process_claim_unstarted(*pool, *this); }
  void add_process_info(TaskInfo& i) const noexcept override {
    i.child_pid = child_pid.load(std::memory_order_relaxed);
    i.exit_signal = exit_signal.load(std::memory_order_relaxed);
    i.exit_code = exit_code.load(std::memory_order_relaxed);
  }
};

}  // namespace detail

/// A plain function bound for the process pool: what atask::process()
/// returns. Pass it to Supervisor::submit() or background_task() in place of
/// a callable.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, except assignment (every
/// other member is const).
template <class R, class... A>
class ProcessFn {
 public:
  using result_type = R;
  using pointer = R (*)(A...);

  ProcessFn(pointer f, ProcessLimits limits) noexcept : f_(f), limits_(limits) {}
  pointer function() const noexcept { return f_; }
  const ProcessLimits& limits() const noexcept { return limits_; }

  /// The arguments as the JSON array the child gets (each converted to its
  /// parameter's type first).
  /// @throws ConversionError for a value JSON cannot carry - a NaN or
  /// infinite double, a string that is not UTF-8 - naming the argument and
  /// the value, e.g. "argument 2: a NaN double cannot be sent to a child
  /// process (JSON has no NaN)".
  template <class... Args>
  std::string encode(Args&&... args) const {
    if constexpr (sizeof...(Args) != sizeof...(A)) {
      static_assert(detail::dependent_false<R>,
                    "atask::process(): wrong number of arguments for the function");
      return {};
    } else {
      static_assert((std::is_constructible_v<std::decay_t<A>, Args&&> && ...),
                    "atask::process(): an argument does not convert to its parameter's type");
      boost::json::array a;
      a.reserve(sizeof...(A));
      (a.push_back(boost::json::value_from(std::decay_t<A>(std::forward<Args>(args)))), ...);
      for (std::size_t i = 0; i < a.size(); ++i)
        if (std::string why =
                detail::check_sendable(a[i], "argument " + std::to_string(i + 1), "to a child process");
            !why.empty())
          throw ConversionError("process task: " + why);
      return boost::json::serialize(a);
    }
  }

  /// One call as a task for the process pool, not yet queued: what
  /// Supervisor::submit() launches.
  template <class... Args>
  detail::ProcessTask<R>* make_task(std::uint64_t id, Priority priority, const std::string& name,
                                    Args&&... args) const {
    std::string json = encode(std::forward<Args>(args)...);
    return new detail::ProcessTask<R>(id, priority, name, &detail::process_entry<R, A...>,
                                      reinterpret_cast<void (*)()>(f_), std::move(json), limits_);
  }

 private:
  pointer f_;
  ProcessLimits limits_;
};

/// One call of a process function whose arguments are already JSON and
/// whose result stays JSON: what named tasks submit (the child decodes the
/// arguments; one that does not fit fails the task with the child's
/// message). Pass it to Supervisor::submit() with no further arguments.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe (const).
class JsonProcessCall {
 public:
  using result_type = boost::json::value;

  template <class R, class... A>
  JsonProcessCall(const ProcessFn<R, A...>& fn, std::string args_json)
      : entry_(&detail::process_entry<R, A...>),
        fn_(reinterpret_cast<void (*)()>(fn.function())),
        args_(std::move(args_json)),
        limits_(fn.limits()) {}

  detail::ProcessTask<boost::json::value>* make_task(std::uint64_t id, Priority priority,
                                                     const std::string& name) const {
    return new detail::ProcessTask<boost::json::value>(id, priority, name, entry_, fn_, args_, limits_);
  }

 private:
  detail::ProcessEntry entry_;
  void (*fn_)();
  std::string args_;
  ProcessLimits limits_;
};

namespace detail {
template <class R, class... A>
ProcessFn<R, A...> make_process_fn(R (*f)(A...), const ProcessLimits& l) {
  static_assert(((std::is_same_v<A, std::decay_t<A>> ||
                  (std::is_lvalue_reference_v<A> && std::is_const_v<std::remove_reference_t<A>>)) &&
                 ...),
                "atask::process(): parameters must be values or const references (the child gets copies)");
  static_assert((json_convertible<std::decay_t<A>>::to && ...),
                "atask::process(): a parameter type does not convert from Boost.JSON - give it "
                "tag_invoke overloads for boost::json::value_from_tag and value_to_tag");
  static_assert((json_convertible<std::decay_t<A>>::from && ...),
                "atask::process(): a parameter type does not convert to Boost.JSON - give it "
                "a tag_invoke overload for boost::json::value_from_tag");
  if constexpr (!std::is_void_v<R>) {
    static_assert(!std::is_reference_v<R> && !std::is_pointer_v<R>,
                  "atask::process(): the function must return a value (or void), not a reference or pointer");
    static_assert(json_convertible<R>::from && json_convertible<R>::to,
                  "atask::process(): the return type does not convert to and from Boost.JSON - give it "
                  "tag_invoke overloads for boost::json::value_from_tag and value_to_tag");
  }
  return {f, l};
}
}  // namespace detail

/// Binds a plain function (or a lambda without captures) for the process
/// pool. Its parameters and result must convert to and from Boost.JSON; a
/// type that does not is a compile-time error.
template <class F>
auto process(F f, ProcessLimits limits = {}) {
  if constexpr (detail::is_plain_function<F>::value) {
    return detail::make_process_fn(+f, limits);
  } else {
    static_assert(detail::dependent_false<F>,
                  "atask::process() takes a plain function or a lambda without captures: the child "
                  "process cannot see what a callable captured in the parent");
  }
}

}  // namespace atask
