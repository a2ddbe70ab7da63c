#pragma once
// The workers of one supervisor. Shared between the supervisor and its
// workers so that a worker that outlives its supervisor finds it gone
// (supervisor() == nullptr) instead of touching freed memory.

#include <atask/core/worker_info.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace atask {
class Supervisor;
class Worker;
}  // namespace atask

namespace atask::detail {

/// What the registry needs of a worker. Worker implements it, so that the
/// supervisor layer knows workers through this interface only and never
/// includes the workers layer.
class RegisteredWorker {
 public:
  /// The worker itself, for with_worker().
  virtual Worker& registered_worker() noexcept = 0;
  /// Asks the worker to stop; does not wait.
  virtual void registry_stop() = 0;
  virtual bool registry_wait_stopped_until(std::chrono::steady_clock::time_point deadline) const = 0;
  virtual WorkerInfo registry_info() const = 0;
  /// The supervisor is being destroyed: the worker must not reach it again.
  virtual void registry_supervisor_gone() noexcept = 0;

 protected:
  ~RegisteredWorker() = default;
};

class WorkerRegistry {
 public:
  explicit WorkerRegistry(Supervisor* sv) noexcept : sv_(sv) {}

  /// The supervisor, or nullptr once it is gone. Callers hold no lock after
  /// this returns: only use it from code the supervisor waits for.
  Supervisor* supervisor() const noexcept;

  /// Takes the name for w while w is being constructed: nobody else calls
  /// w until publish(w), when its construction is complete (calling a
  /// half-built object's virtual functions from another thread is a race
  /// on its vtable pointer, and may call the wrong override).
  /// @throws OptionsError if another worker has the name.
  void add(RegisteredWorker& w, const std::string& name);
  /// w is fully constructed: infos(), with_worker() and stop_all() see it
  /// from now on. When the supervisor went away meanwhile, tells w so.
  void publish(RegisteredWorker& w) noexcept;
  void rename(RegisteredWorker& w, const std::string& from, const std::string& to);
  void remove(RegisteredWorker& w) noexcept;

  /// Asks every worker to stop without waiting, then waits for each up to
  /// the deadline. Returns the names of those still not stopped. Holds no
  /// lock while workers run their hooks; remove() waits until it is done.
  std::vector<std::string> stop_all(std::chrono::steady_clock::time_point deadline) noexcept;

  /// The published workers' infos, in creation order.
  std::vector<WorkerInfo> infos() const;

  /// Calls f with the worker named `name`, holding no lock but keeping that
  /// worker from being destroyed until f returns (its destructor waits).
  /// False if there is no such worker, or it is still being constructed.
  bool with_worker(std::string_view name, const std::function<void(Worker&)>& f);
  /// The published workers.
  std::size_t size() const;

  /// Called by the supervisor's destructor: workers see no supervisor from now on.
  void detach() noexcept;

 private:
  struct Entry {
    std::string name;
    RegisteredWorker* w = nullptr;
    int pins = 0;            // callers using the worker without the lock (stop_all, with_worker)
    bool published = false;  // constructed: others may call it
  };
  void unpin(std::uint64_t seq) noexcept;
  mutable std::mutex m_;
  std::condition_variable pins_cv_;
  Supervisor* sv_;
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::uint64_t next_seq_ = 0;
  std::size_t published_ = 0;
  std::map<std::uint64_t, Entry> by_seq_;  // creation order
  std::unordered_map<std::string, std::uint64_t, NameHash, std::equal_to<>> by_name_;
  std::unordered_map<RegisteredWorker*, std::uint64_t> seq_of_;
};

}  // namespace atask::detail
