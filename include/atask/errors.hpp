#pragma once
/// @file
/// The exceptions atask throws. Every message names the call and the reason,
/// e.g. "Supervisor::submit() - supervisor 'svc' is not started".

#include <stdexcept>
#include <string>

namespace atask {

/// Base of every atask exception.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Invalid options: negative sizes, a reserve larger than max_threads, ...
/// Thrown where the options are handed in (constructor, resize, start).
class OptionsError : public Error {
 public:
  using Error::Error;
};

/// A call that does not fit the object's lifecycle: submitting to a
/// supervisor that is not started or already stopped, starting twice, ...
class LifecycleError : public Error {
 public:
  using Error::Error;
};

/// A wait ran out of time (TaskHandle::get_for, wait_completed, ...).
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// The task was canceled before it produced a result: by TaskHandle::cancel()
/// while queued or delayed, by a supervisor stop, or by a coroutine task
/// whose aloop was stopped. TaskHandle::get() throws it for such tasks.
class TaskCanceled : public Error {
 public:
  using Error::Error;
};

/// The task was abandoned in the cold stage of a shutdown: it was still
/// running past every deadline, so its waiters are released with this error.
class TaskAbandoned : public Error {
 public:
  using Error::Error;
};

}  // namespace atask
