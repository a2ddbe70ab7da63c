#pragma once
// The one door from the library's own higher layers (workers, the HTTP
// server) into the supervisor's internals. Private: never installed, so
// users cannot reach what it opens.

#include <atask/supervisor/detail/worker_registry.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <memory>

namespace atask::detail {

struct SupervisorAccess {
  /// The registry workers add themselves to; shared, so that a worker or a
  /// control-plane call that outlives the supervisor finds it detached.
  static const std::shared_ptr<WorkerRegistry>& worker_registry(const Supervisor& sv) noexcept {
    return sv.worker_registry();
  }
};

}  // namespace atask::detail
