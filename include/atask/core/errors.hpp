#pragma once
/// @file
/// The exceptions atask throws. Every message names the call and the reason,
/// e.g. "Supervisor::submit() - supervisor 'svc' is not started".

#include <stdexcept>
#include <string>
#include <utility>

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

/// A name that is not there: a job type, a worker (control plane), ...
class NotFoundError : public Error {
 public:
  using Error::Error;
};

/// A value that does not convert to the type asked for: a JSON item put
/// into a queue worker whose item type it does not fit, ...
class ConversionError : public Error {
 public:
  using Error::Error;
};

/// The broker (Redis) failed a call: it is unreachable, the connection was
/// lost or closed, or it answered with an error reply (the message has it).
class BrokerError : public Error {
 public:
  using Error::Error;
};

/// A plugin could not be loaded (plugins/loader.hpp): the message names the
/// file and the reason.
class PluginError : public Error {
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

/// The task was abandoned in the cold stage of a shutdown (see StopOptions):
/// it was still running past every deadline, so its waiters are released
/// with this error.
class TaskAbandoned : public Error {
 public:
  using Error::Error;
};

/// A process task failed for a reason of its own process (see
/// atask/process/process.hpp).
/// The subclasses say which; the message always names the task.
class ProcessError : public Error {
 public:
  using Error::Error;
};

/// The function threw in the child process. what() is "task #N: <type>:
/// <what() of the exception>"; type() and message() give the two parts.
class ChildError : public ProcessError {
 public:
  ChildError(const std::string& what, std::string type, std::string message)
      : ProcessError(what), type_(std::move(type)), message_(std::move(message)) {}
  /// The exception's type as the child saw it (demangled), e.g. "std::invalid_argument".
  const std::string& type() const noexcept { return type_; }
  /// The exception's own what().
  const std::string& message() const noexcept { return message_; }

 private:
  std::string type_, message_;
};

/// The child process died before it returned a result: a crash (signal),
/// an exit() or _exit(), or a kill from outside. The pool reaps it and
/// forks a replacement.
class ChildCrashed : public ProcessError {
 public:
  ChildCrashed(const std::string& what, int pid, int signal, int exit_code)
      : ProcessError(what), pid_(pid), signal_(signal), exit_code_(exit_code) {}
  int pid() const noexcept { return pid_; }
  /// The signal that killed it, 0 if it exited.
  int signal() const noexcept { return signal_; }
  /// Its exit code, -1 if a signal killed it.
  int exit_code() const noexcept { return exit_code_; }

 private:
  int pid_, signal_, exit_code_;
};

/// The process task ran past its hard time limit: its child was killed
/// (and replaced).
class TimeLimitExceeded : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

}  // namespace atask
