#pragma once
/// @file
/// FunctionCollection and TaskCollection: atasker's collections. Register a
/// set of functions by name with a priority (lower runs first), then run them
/// all - one after another on the calling thread (FunctionCollection) or as
/// pool tasks in parallel (TaskCollection) - and get each function's result
/// or error, plus an all_ok flag. One failing function never stops the others.
///
/// @code
///   atask::FunctionCollection<int> startup;
///   startup.add("db", [] { return connect_db(); }, 10);   // runs first
///   startup.add("cache", [] { return warm_cache(); });    // priority 100
///   auto r = startup.run();
///   if (!r.all_ok) for (auto& e : r.entries) if (!e.ok()) log(e.name, e.error_message);
/// @endcode

#include <atask/core/errors.hpp>
#include <atask/core/priority.hpp>
#include <atask/supervisor/supervisor.hpp>
#include <atask/core/task.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace atask {

/// The priority add() gives a function when none is named.
inline constexpr int default_function_priority = 100;

/// The outcome of one function in a collection run.
///
/// `value` is engaged exactly when the function returned normally (ok()):
/// it holds the returned R, or std::monostate for a collection of void
/// functions. On failure it is empty and `error` / `error_message` say why.
template <class R>
struct CollectionEntry {
  using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  std::string name;
  int priority = default_function_priority;
  std::optional<value_type> value{};
  /// What the function threw, or why it could not run (submission failed,
  /// TimeoutError, TaskCanceled, ...); nullptr on success.
  std::exception_ptr error{};
  /// what() of `error`; empty on success.
  std::string error_message{};

  bool ok() const noexcept { return error == nullptr; }
};

/// What a collection run returns: one entry per function, in run order
/// (priority, then registration order), and whether every one succeeded.
template <class R>
struct CollectionResult {
  std::vector<CollectionEntry<R>> entries{};
  /// False when any function failed; true for an empty collection.
  bool all_ok = true;

  /// The entry of the function named `name`, nullptr if none.
  const CollectionEntry<R>* find(std::string_view name) const noexcept {
    for (const auto& e : entries)
      if (e.name == name) return &e;
    return nullptr;
  }
  /// Same, but for a name that must be there.
  /// @throws Error when there is no such entry.
  const CollectionEntry<R>& at(std::string_view name) const {
    if (const auto* e = find(name)) return *e;
    throw Error("CollectionResult::at() - no function named '" + std::string(name) + "' in this run");
  }
};

/// Options of a TaskCollection; pass them as designated initializers.
struct TaskCollectionOptions {
  /// Pool priority of every task the collection submits. (The per-function
  /// priority only orders submission and the result entries.)
  Priority priority = Priority::normal;
  /// How long run() waits for all the tasks together. 0 = no limit.
  /// A function still unfinished at the deadline is reported with a
  /// TimeoutError and its task is canceled (see TaskHandle::cancel()).
  std::chrono::milliseconds timeout{0};
};

namespace detail {

/// what() of an exception_ptr (a fixed text for non-std exceptions).
std::string collection_error_message(std::exception_ptr e);
/// @throws OptionsError naming `call` when the options are invalid.
void validate(const TaskCollectionOptions& o, const char* call);

/// The thread-safe, priority-ordered list both collections keep.
template <class R>
class FunctionList {
 public:
  struct Item {
    std::string name;
    int priority;
    std::shared_ptr<const std::function<R()>> fn;
  };

  explicit FunctionList(const char* owner) noexcept : owner_(owner) {}

  template <class F>
  void add(std::string name, F&& f, int priority) {
    if (name.empty()) throw OptionsError(std::string(owner_) + "::add() - the function name is empty");
    auto fn = std::make_shared<const std::function<R()>>(std::forward<F>(f));
    if (!*fn) throw OptionsError(std::string(owner_) + "::add() - function '" + name + "' is empty");
    std::lock_guard lk(m_);
    for (const auto& i : items_)
      if (i.name == name)
        throw OptionsError(std::string(owner_) + "::add() - a function named '" + name +
                           "' is already registered");
    // After the last item with the same or a lower priority: ties keep
    // registration order.
    auto at = std::upper_bound(items_.begin(), items_.end(), priority,
                               [](int p, const Item& i) { return p < i.priority; });
    items_.insert(at, Item{std::move(name), priority, std::move(fn)});
  }

  bool remove(std::string_view name) {
    std::lock_guard lk(m_);
    auto it = std::find_if(items_.begin(), items_.end(), [&](const Item& i) { return i.name == name; });
    if (it == items_.end()) return false;
    items_.erase(it);
    return true;
  }

  bool contains(std::string_view name) const {
    std::lock_guard lk(m_);
    return std::any_of(items_.begin(), items_.end(), [&](const Item& i) { return i.name == name; });
  }

  std::size_t size() const {
    std::lock_guard lk(m_);
    return items_.size();
  }

  void clear() {
    std::lock_guard lk(m_);
    items_.clear();
  }

  // A run works on this copy, without the lock: functions may add to or run
  // the collection themselves.
  std::vector<Item> snapshot() const {
    std::lock_guard lk(m_);
    return items_;
  }

 private:
  const char* owner_;
  mutable std::mutex m_;
  std::vector<Item> items_;
};

template <class R>
void fail_entry(CollectionEntry<R>& e, std::exception_ptr ex) {
  e.value.reset();
  e.error_message = collection_error_message(ex);
  e.error = std::move(ex);
}

}  // namespace detail

/// A named set of functions returning R, run in priority order on the
/// calling thread (atasker's FunctionCollection).
///
/// Register with add(name, fn, priority): a lower priority value runs
/// first; equal priorities run in registration order. run() calls every
/// function once, catches whatever each throws, and returns a
/// CollectionResult with one entry per function in run order.
///
/// A run works on a snapshot taken when it starts: functions added or
/// removed meanwhile (even by the running functions themselves) count from
/// the next run.
///
/// @code
///   atask::FunctionCollection<> shutdown;
///   shutdown.add("flush", [] { flush(); }, 10);
///   shutdown.add("close", [] { close(); }, 20);
///   bool ok = shutdown.run().all_ok;
/// @endcode
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe (every member may be called
/// from any thread); two overlapping runs call the same callables concurrently.
template <class R = void>
class FunctionCollection {
  static_assert(std::is_void_v<R> || (std::is_object_v<R> && !std::is_array_v<R>),
                "FunctionCollection<R>: R must be void or an object type");

 public:
  using result_type = CollectionResult<R>;

  FunctionCollection() = default;
  FunctionCollection(const FunctionCollection&) = delete;
  FunctionCollection& operator=(const FunctionCollection&) = delete;

  /// Registers `f` (a copyable callable taking no argument whose result
  /// converts to R) under `name`.
  /// @throws OptionsError when the name is empty, already registered, or
  ///         `f` is an empty std::function / null function pointer.
  template <class F>
  void add(std::string name, F&& f, int priority = default_function_priority) {
    static_assert(std::is_invocable_r_v<R, std::decay_t<F>&>,
                  "FunctionCollection::add(): f must be callable with no argument and return R");
    list_.add(std::move(name), std::forward<F>(f), priority);
  }
  /// Unregisters the function named `name`; false if there was none.
  bool remove(std::string_view name) { return list_.remove(name); }
  bool contains(std::string_view name) const { return list_.contains(name); }
  std::size_t size() const { return list_.size(); }
  bool empty() const { return size() == 0; }
  void clear() { list_.clear(); }

  /// Calls every registered function in order on this thread and returns
  /// their outcomes. Never throws what a function throws (that goes to its
  /// entry).
  /// @throws std::bad_alloc when memory runs out.
  result_type run() {
    auto items = list_.snapshot();
    result_type out;
    out.entries.reserve(items.size());
    for (auto& item : items) {
      auto& e = out.entries.emplace_back(
          CollectionEntry<R>{.name = std::move(item.name), .priority = item.priority});
      try {
        if constexpr (std::is_void_v<R>) {
          (*item.fn)();
          e.value.emplace();
        } else {
          e.value.emplace((*item.fn)());
        }
      } catch (...) {
        detail::fail_entry(e, std::current_exception());
        out.all_ok = false;
      }
    }
    return out;
  }

 private:
  detail::FunctionList<R> list_{"FunctionCollection"};
};

/// A FunctionCollection whose run() submits every function to a Supervisor
/// as a pool task, so that they run in parallel, and waits for all of them
/// (atasker's TaskCollection).
///
/// Functions are submitted in priority order (lower first) with the
/// options' pool priority and the function's name as the task name; the
/// result entries are in that order whatever order the tasks finish in.
/// A function whose task cannot be submitted (the supervisor is not
/// running), is canceled, abandoned, or still unfinished at the options'
/// timeout gets that as its error: run() never hangs past the timeout.
/// What a function throws is caught inside its task and goes to its entry,
/// so the task itself ends `completed` in the supervisor's books.
///
/// Do not run() with no timeout from a pool task of a pool that may be full:
/// the collection's tasks would wait for the slot the caller holds.
///
/// The supervisor must outlive the collection; a function that timed out
/// may still be running when run() returns, so what it captures must
/// outlive it too.
///
/// @code
///   atask::TaskCollection<int> probes(sv, {.priority = atask::Priority::high, .timeout = 5s});
///   probes.add("disk", [] { return check_disk(); });
///   probes.add("net", [] { return check_net(); });
///   auto r = probes.run();   // both ran at once on pool threads
/// @endcode
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as FunctionCollection.
template <class R = void>
class TaskCollection {
  static_assert(std::is_void_v<R> || (std::is_object_v<R> && !std::is_array_v<R>),
                "TaskCollection<R>: R must be void or an object type");
  static_assert(std::is_void_v<R> || std::is_move_constructible_v<R>,
                "TaskCollection<R>: R must be move constructible");
  static_assert(!detail::is_awaitable<R>::value,
                "TaskCollection<R>: coroutine functions are not supported; R must be a plain result");

 public:
  using result_type = CollectionResult<R>;

  /// @throws OptionsError when the timeout is negative.
  explicit TaskCollection(Supervisor& sv, TaskCollectionOptions options = {}) : sv_(&sv), opts_(options) {
    detail::validate(opts_, "TaskCollection::TaskCollection()");
  }
  TaskCollection(const TaskCollection&) = delete;
  TaskCollection& operator=(const TaskCollection&) = delete;

  /// As FunctionCollection::add().
  template <class F>
  void add(std::string name, F&& f, int priority = default_function_priority) {
    static_assert(std::is_invocable_r_v<R, std::decay_t<F>&>,
                  "TaskCollection::add(): f must be callable with no argument and return R");
    list_.add(std::move(name), std::forward<F>(f), priority);
  }
  bool remove(std::string_view name) { return list_.remove(name); }
  bool contains(std::string_view name) const { return list_.contains(name); }
  std::size_t size() const { return list_.size(); }
  bool empty() const { return size() == 0; }
  void clear() { list_.clear(); }

  const TaskCollectionOptions& options() const noexcept { return opts_; }

  /// Submits every function, waits for all (up to the options' timeout in
  /// all) and returns their outcomes. Errors go to the entries, never out.
  result_type run() {
    using clock = std::chrono::steady_clock;
    const bool limited = opts_.timeout.count() > 0;
    const auto deadline = clock::now() + opts_.timeout;
    auto items = list_.snapshot();
    result_type out;
    out.entries.reserve(items.size());
    std::vector<TaskHandle<void>> tasks(items.size());
    std::vector<std::shared_ptr<Outcome>> outcomes(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      auto& e =
          out.entries.emplace_back(CollectionEntry<R>{.name = items[i].name, .priority = items[i].priority});
      try {
        outcomes[i] = std::make_shared<Outcome>();
        tasks[i] = sv_->submit(TaskOptions{.priority = opts_.priority, .name = items[i].name},
                               [fn = std::move(items[i].fn), o = outcomes[i]] { o->run(*fn); });
      } catch (...) {
        detail::fail_entry(e, std::current_exception());
      }
    }
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      auto& e = out.entries[i];
      const auto& t = tasks[i];
      if (!t.valid()) continue;  // not submitted: already failed
      if (limited && !t.wait_until(deadline) && t.cancel()) {
        // cancel() is false only when the task became final meanwhile:
        // then its own outcome stands.
        detail::fail_entry(e, std::make_exception_ptr(TimeoutError(
                                  "TaskCollection::run() - function '" + e.name + "' did not finish within " +
                                  std::to_string(opts_.timeout.count()) + "ms")));
        continue;
      }
      try {
        t.get();  // TaskCanceled / TaskAbandoned: the function did not finish
      } catch (...) {
        detail::fail_entry(e, std::current_exception());
        continue;
      }
      // The task is final, so its outcome is written and no longer touched.
      Outcome& o = *outcomes[i];
      if (o.error)
        detail::fail_entry(e, std::move(o.error));
      else
        e.value = std::move(o.value);
    }
    out.all_ok = std::all_of(out.entries.begin(), out.entries.end(), [](const auto& e) { return e.ok(); });
    return out;
  }

 private:
  // What one function's task produced. The task catches the function's
  // exception itself and hands it over here rather than through the task
  // handle: the entry may then outlive the task without sharing the
  // exception object with the task state, whose last reference a pool
  // thread may drop (ThreadSanitizer cannot see the uninstrumented
  // exception_ptr reference count that orders that).
  struct Outcome {
    std::optional<typename CollectionEntry<R>::value_type> value;
    std::exception_ptr error;

    void run(const std::function<R()>& fn) noexcept {
      try {
        if constexpr (std::is_void_v<R>) {
          fn();
          value.emplace();
        } else {
          value.emplace(fn());
        }
      } catch (...) {
        error = std::current_exception();
      }
    }
  };

  Supervisor* sv_;
  TaskCollectionOptions opts_;
  detail::FunctionList<R> list_{"TaskCollection"};
};

}  // namespace atask
