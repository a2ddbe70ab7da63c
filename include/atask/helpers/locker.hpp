#pragma once
/// @file
/// Locker: atasker's timed lock. lock() waits at most `timeout` for the
/// lock; when it cannot take it in time - a deadlock, a thread stuck while
/// holding it - it calls a critical handler (by default: a critical log
/// line), counts the failure, and hands back a falsy guard instead of
/// blocking forever.
///
/// @code
///   atask::Locker lk({.timeout = 5s, .on_critical = [](const atask::Locker&) { std::abort(); },
///                     .name = "db"});
///   if (auto g = lk.lock()) { /* exclusive access */ }
///   auto safe_put = lk.wrap([&](int v) { table.push_back(v); });
///   bool ran = safe_put(42);           // false: not run, the lock was not taken in time
/// @endcode

#include <atask/core/errors.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace spdlog {
class logger;
}

namespace atask {

class Locker;

/// Locker options; pass them as designated initializers.
struct LockerOptions {
  /// How long lock() waits before it gives up. 0 = a single try. Must be >= 0.
  std::chrono::milliseconds timeout{5000};
  /// Called (on the thread that called lock()) each time lock() gives up,
  /// after failures() counted it. Empty = log "Locker '<name>' - lock not
  /// taken within <timeout>" at critical level. What it throws propagates
  /// out of lock() / the wrapped call.
  std::function<void(const Locker&)> on_critical{};
  /// Shown in the log line and by name().
  std::string name = "locker";
  /// true: the thread holding the lock may lock it again (atasker's default,
  /// an RLock); each guard releases one level. false: doing so throws
  /// LifecycleError instead of deadlocking.
  bool recursive = false;
  /// Logger of the default critical handler; nullptr = spdlog's logger
  /// named "atask" if one is registered, else spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger{};
};

/// Holds a Locker locked until it is destroyed, moved from or unlock()ed.
/// Truthy when it holds the lock: a guard from a lock() that gave up is
/// falsy and releases nothing.
///
/// A guard must be released on the thread that took it (a std::timed_mutex
/// rule), and before its Locker is destroyed.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Unsafe.
class [[nodiscard]] LockerGuard {
 public:
  LockerGuard() noexcept = default;
  LockerGuard(LockerGuard&& o) noexcept : locker_(std::exchange(o.locker_, nullptr)) {}
  LockerGuard& operator=(LockerGuard&& o) noexcept {
    if (this != &o) {
      unlock();
      locker_ = std::exchange(o.locker_, nullptr);
    }
    return *this;
  }
  LockerGuard(const LockerGuard&) = delete;
  LockerGuard& operator=(const LockerGuard&) = delete;
  ~LockerGuard() { unlock(); }

  bool owns_lock() const noexcept { return locker_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }
  /// Releases the lock now (a no-op for a falsy or already released guard).
  inline void unlock() noexcept;

 private:
  friend class Locker;
  explicit LockerGuard(Locker* l) noexcept : locker_(l) {}
  Locker* locker_ = nullptr;
};

template <class F>
class LockedFunction;

/// A timed lock with a critical handler (atasker's Locker), on a
/// std::timed_mutex.
///
/// - lock(): waits up to the timeout; on failure counts it, calls the
///   critical handler and returns a falsy guard.
/// - try_lock_for(d) / try_lock(): a quiet attempt - no handler, not counted.
/// - wrap(f): a callable that runs f under lock(). It returns
///   std::optional<result> (std::nullopt when the lock was not taken and f
///   did not run) or, when f returns void, bool (true = f ran).
///
/// The Locker must outlive its guards and wrapped callables. Not copyable
/// or movable.
///
/// @throws OptionsError from the constructor when the timeout is negative.
/// @throws LifecycleError when a non-recursive Locker is locked again by the
///         thread that holds it.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
class Locker {
 public:
  using guard_type = LockerGuard;

  explicit Locker(LockerOptions options = {});
  Locker(const Locker&) = delete;
  Locker& operator=(const Locker&) = delete;
  ~Locker();

  /// Takes the lock within the timeout (truthy guard) or gives up: counts a
  /// failure, calls the critical handler, returns a falsy guard.
  [[nodiscard]] LockerGuard lock();

  /// Tries for `d` (0 = once); a falsy guard on failure, with no handler
  /// call and no failure counted.
  template <class Rep, class Period>
  [[nodiscard]] LockerGuard try_lock_for(std::chrono::duration<Rep, Period> d) {
    return try_lock_impl(std::chrono::ceil<std::chrono::nanoseconds>(d), "Locker::try_lock_for()");
  }
  [[nodiscard]] LockerGuard try_lock() {
    return try_lock_impl(std::chrono::nanoseconds{0}, "Locker::try_lock()");
  }

  /// `f` bound to this Locker: each call runs f(args...) under lock(). See
  /// LockedFunction for what a call returns.
  template <class F>
  [[nodiscard]] LockedFunction<std::decay_t<F>> wrap(F&& f) {
    return LockedFunction<std::decay_t<F>>(*this, std::forward<F>(f));
  }

  /// How many times lock() (or a wrapped call) gave up since construction.
  std::uint64_t failures() const noexcept { return failures_.load(std::memory_order_relaxed); }
  const std::string& name() const noexcept { return opts_.name; }
  std::chrono::milliseconds timeout() const noexcept { return opts_.timeout; }
  bool recursive() const noexcept { return opts_.recursive; }

 private:
  friend class LockerGuard;
  LockerGuard try_lock_impl(std::chrono::nanoseconds d, const char* call);
  bool acquire(std::chrono::nanoseconds d, const char* call);
  void release() noexcept;
  void critical();

  LockerOptions opts_;
  std::timed_mutex m_;
  // The holder's id, so that a thread can tell it already holds the lock
  // (only it can have stored its own id, so a relaxed load is enough).
  std::atomic<std::thread::id> owner_{};
  // Extra levels taken by the holder of a recursive Locker; only the holder
  // touches it.
  unsigned depth_ = 0;
  std::atomic<std::uint64_t> failures_{0};
};

inline void LockerGuard::unlock() noexcept {
  if (auto* l = std::exchange(locker_, nullptr)) l->release();
}

/// What Locker::wrap() returns: calling it runs the wrapped callable under
/// Locker::lock(). When the lock is not taken in time the callable does not
/// run, the critical handler has been called, and the call returns
/// std::nullopt - or false for a callable returning void (true when it ran).
/// A non-void result is returned by value (std::optional<std::remove_cvref_t<R>>).
/// What the callable throws propagates, after the lock is released.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe: every call runs under the
/// Locker's lock (which must outlive this object).
template <class F>
class LockedFunction {
 public:
  LockedFunction(Locker& l, F f) : locker_(&l), f_(std::move(f)) {}

  template <class... Args>
  auto operator()(Args&&... args) {
    return call(*locker_, f_, std::forward<Args>(args)...);
  }
  template <class... Args>
  auto operator()(Args&&... args) const {
    return call(*locker_, f_, std::forward<Args>(args)...);
  }

 private:
  template <class G, class... Args>
  static auto call(Locker& l, G& g, Args&&... args) {
    using R = std::invoke_result_t<G&, Args...>;
    auto guard = l.lock();
    if constexpr (std::is_void_v<R>) {
      if (!guard) return false;
      std::invoke(g, std::forward<Args>(args)...);
      return true;
    } else {
      using V = std::remove_cvref_t<R>;
      if (!guard) return std::optional<V>{};
      return std::optional<V>(std::invoke(g, std::forward<Args>(args)...));
    }
  }

  Locker* locker_;
  F f_;
};

}  // namespace atask
