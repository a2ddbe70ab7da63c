// RetryPolicy: which failures are retried, and after how long.

#include <atask/core/errors.hpp>
#include <atask/tasks/retry.hpp>

#include <algorithm>
#include <cmath>

namespace atask {

bool RetryPolicy::retries(const std::string& type) const {
  if (type == "atask::TimeoutError" || type == "atask::TimeLimitExceeded") return on_time_limit;
  if (type == "atask::ChildCrashed") return on_child_crash;
  if (type == "atask::TaskCanceled") return false;  // a cancel is an answer, not a failure
  return on.empty() || std::find(on.begin(), on.end(), type) != on.end();
}

std::chrono::milliseconds RetryPolicy::delay_before(unsigned n, double unit) const {
  using std::chrono::milliseconds;
  if (n == 0) n = 1;
  if (!delays.empty()) return delays[std::min<std::size_t>(n - 1, delays.size() - 1)];
  // base * 2^(n-1), capped; computed in double so a large n cannot overflow.
  const double grown = static_cast<double>(backoff.count()) * std::pow(2.0, std::min(n - 1, 62u));
  const double top = std::min(grown, static_cast<double>(backoff_cap.count()));
  const double d = jitter ? top * std::clamp(unit, 0.0, 1.0) : top;
  return milliseconds(static_cast<long long>(d));
}

void RetryPolicy::check(const char* where) const {
  const std::string w(where);
  if (max_attempts == 0) throw OptionsError(w + " - retry.max_attempts must be at least 1");
  if (backoff.count() < 0 || backoff_cap.count() < 0)
    throw OptionsError(w + " - retry.backoff and retry.backoff_cap must not be negative");
  if (backoff_cap < backoff) throw OptionsError(w + " - retry.backoff_cap is below retry.backoff");
  for (auto d : delays)
    if (d.count() < 0) throw OptionsError(w + " - retry.delays holds a negative delay");
}

}  // namespace atask
