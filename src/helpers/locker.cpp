#include <atask/helpers/locker.hpp>

#include <spdlog/spdlog.h>

#include <string>

// GCC 12's ThreadSanitizer does not intercept pthread_mutex_clocklock, which
// std::timed_mutex::try_lock_for uses (with steady_clock): it would not see
// the lock taken, report every unlock as "unlock of an unlocked mutex" and
// miss the order the lock gives. It does intercept pthread_mutex_timedlock
// (a system_clock deadline), so TSan builds wait on that clock instead.
#if defined(__SANITIZE_THREAD__)
#define ATASK_LOCKER_SYSTEM_CLOCK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ATASK_LOCKER_SYSTEM_CLOCK 1
#endif
#endif

namespace atask {

Locker::Locker(LockerOptions options) : opts_(std::move(options)) {
  if (opts_.timeout.count() < 0)
    throw OptionsError("Locker::Locker() - timeout must be >= 0 (got " +
                       std::to_string(opts_.timeout.count()) + "ms)");
}

Locker::~Locker() = default;

LockerGuard Locker::lock() {
  if (acquire(opts_.timeout, "Locker::lock()")) return LockerGuard(this);
  critical();
  return {};
}

LockerGuard Locker::try_lock_impl(std::chrono::nanoseconds d, const char* call) {
  if (acquire(d, call)) return LockerGuard(this);
  return {};
}

bool Locker::acquire(std::chrono::nanoseconds d, const char* call) {
  const auto self = std::this_thread::get_id();
  if (owner_.load(std::memory_order_relaxed) == self) {
    // Waiting would only run into the timeout (and std::timed_mutex makes a
    // second lock by its owner undefined): re-enter or refuse at once.
    if (!opts_.recursive)
      throw LifecycleError(std::string(call) + " - locker '" + opts_.name +
                           "' is already held by this thread (it is not recursive)");
    ++depth_;
    return true;
  }
#ifdef ATASK_LOCKER_SYSTEM_CLOCK
  const bool taken = d.count() <= 0 ? m_.try_lock() : m_.try_lock_until(std::chrono::system_clock::now() + d);
#else
  const bool taken = d.count() <= 0 ? m_.try_lock() : m_.try_lock_for(d);
#endif
  if (!taken) return false;
  owner_.store(self, std::memory_order_relaxed);
  return true;
}

void Locker::release() noexcept {
  if (depth_ > 0) {
    --depth_;
    return;
  }
  owner_.store(std::thread::id{}, std::memory_order_relaxed);
  m_.unlock();
}

void Locker::critical() {
  const auto n = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (opts_.on_critical) {
    opts_.on_critical(*this);
    return;
  }
  auto log = opts_.logger;
  if (!log) log = spdlog::get("atask");
  if (!log) log = spdlog::default_logger();
  if (log)
    log->critical("Locker '{}' - lock not taken within {}ms (failure #{})", opts_.name, opts_.timeout.count(),
                  n);
}

}  // namespace atask
