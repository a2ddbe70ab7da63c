#pragma once
/// @file
/// Step: a named part of a supervisor that starts after the steps it depends
/// on and stops before them (Celery's bootsteps). The supervisor itself is
/// built from steps - "loop", "aloops", "pool", "workers" - and a service
/// adds its own with Supervisor::add_step() before start().
///
/// @code
///   sv.add_step({.name = "cache",
///                .depends_on = {"pool"},
///                .start = [&](atask::Supervisor& s) { cache.warm_up(s); },
///                .stop = [&](atask::Supervisor&) { cache.flush(); }});
///   sv.start();  // loop -> aloops -> pool -> workers -> cache
/// @endcode
///
/// See docs/steps.md for the built-in steps and what start and stop
/// guarantee.

#include <atask/util/enum_names.hpp>

#include <functional>
#include <string>
#include <vector>

namespace atask {

class Supervisor;

/// One step; pass it as designated initializers.
///
/// A step's hooks are called one at a time, never concurrently with another
/// step's hook. start runs on the thread that calls Supervisor::start(); stop
/// runs on the supervisor's stopper thread ("<id>-stop"), never on its
/// io_context thread, a pool thread or an aloop.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Unsafe (a plain struct;
/// Supervisor::add_step() takes its own copy).
struct Step {
  /// Unique within the supervisor; must not be empty or a built-in name.
  std::string name{};
  /// Names of the steps that must be started before this one and stopped
  /// after it (Celery calls them `requires`, a C++20 keyword). Built-in and
  /// user steps alike.
  std::vector<std::string> depends_on{};
  /// Called once by Supervisor::start(), after every step in depends_on has
  /// started. What it throws aborts the start: the steps already started
  /// are stopped in reverse order and start() throws atask::Error.
  std::function<void(Supervisor&)> start{};
  /// Called once when the supervisor stops, if start returned normally,
  /// before any step in depends_on stops. What it throws is logged and the
  /// shutdown goes on.
  std::function<void(Supervisor&)> stop{};
};

/// Where a step is: created (not started yet), running (started), failed
/// (its start threw), stopped (its stop hook has run). Named "created",
/// "running", "failed", "stopped" by to_string() / from_string()
/// (enum_names.hpp).
enum class StepState : unsigned char { created, running, failed, stopped };
BOOST_DESCRIBE_ENUM(StepState, created, running, failed, stopped)

/// One step as SupervisorInfo::steps shows it.
struct StepInfo {
  std::string name{};
  std::vector<std::string> depends_on{};
  bool builtin = false;
  StepState state = StepState::created;
};

}  // namespace atask
