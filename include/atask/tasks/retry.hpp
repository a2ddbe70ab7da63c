#pragma once
/// @file
/// RetryPolicy: when and how soon a failed named task runs again. Set it as
/// a task's default in the registry (NamedTaskOptions::retry) or per send
/// (distributed::SendOptions::retry); the distributed mode applies it (a
/// retry is a new attempt of the same task id, delayed in Redis).
///
/// @code
///   tasks.add("fetch", fetch, {.retry = {.max_attempts = 5,
///                                        .on = {"std::system_error"},
///                                        .backoff = 500ms, .backoff_cap = 30s}});
///   client.send("resize", args, {.retry = atask::RetryPolicy{.max_attempts = 3,
///                                                             .delays = {1s, 10s}}});
/// @endcode

#include <chrono>
#include <string>
#include <vector>

namespace atask {

struct RetryPolicy {
  /// Runs in all, the first one included; 1: no retry.
  unsigned max_attempts = 1;
  /// Error types retried, as the worker names them ("std::runtime_error",
  /// "my::Transient"); empty: every error. Time limits and child crashes
  /// follow their own switches below, not this list.
  std::vector<std::string> on{};
  /// The task ran past its time limit (atask::TimeoutError,
  /// atask::TimeLimitExceeded).
  bool on_time_limit = true;
  /// The child process of a process-kind task died (atask::ChildCrashed).
  bool on_child_crash = true;
  /// Exponential back-off: before retry n (1, 2, ...) the task waits up to
  /// min(backoff_cap, backoff * 2^(n-1)) ...
  std::chrono::milliseconds backoff{1'000};
  std::chrono::milliseconds backoff_cap{60'000};
  /// ... drawn uniformly from [0, that] ("full jitter": retries of many
  /// tasks that failed together spread out); false: exactly that.
  bool jitter = true;
  /// Fixed delays instead of the exponential ones: retry n waits delays[n-1]
  /// (the last one repeats). Empty: exponential.
  std::vector<std::chrono::milliseconds> delays{};

  /// Whether a failure with this error type is retried (attempts left aside).
  bool retries(const std::string& error_type) const;
  /// The delay before retry n (n >= 1); `unit` in [0, 1) draws the jitter.
  std::chrono::milliseconds delay_before(unsigned n, double unit) const;
  /// @throws OptionsError for max_attempts 0, a negative delay or a cap
  ///         below the base.
  void check(const char* where) const;
};

}  // namespace atask
