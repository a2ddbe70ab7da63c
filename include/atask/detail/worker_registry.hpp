#pragma once
// The workers of one supervisor. Shared between the supervisor and its
// workers so that a worker that outlives its supervisor finds it gone
// (supervisor() == nullptr) instead of touching freed memory.

#include <atask/worker_info.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace atask {
class Supervisor;
class Worker;
}  // namespace atask

namespace atask::detail {

class WorkerRegistry {
 public:
  explicit WorkerRegistry(Supervisor* sv) noexcept : sv_(sv) {}

  /// The supervisor, or nullptr once it is gone. Callers hold no lock after
  /// this returns: only use it from code the supervisor waits for.
  Supervisor* supervisor() const noexcept;

  /// Throws OptionsError if another worker has the name.
  void add(Worker& w, const std::string& name);
  void rename(Worker& w, const std::string& from, const std::string& to);
  void remove(Worker& w) noexcept;

  /// Asks every worker to stop without waiting, then waits for each up to
  /// the deadline. Returns the names of those still not stopped. Holds no
  /// lock while workers run their hooks; remove() waits until it is done.
  std::vector<std::string> stop_all(std::chrono::steady_clock::time_point deadline) noexcept;

  std::vector<WorkerInfo> infos() const;
  std::size_t size() const;

  /// Called by the supervisor's destructor: workers see no supervisor from now on.
  void detach() noexcept;

 private:
  struct Entry {
    std::string name;
    Worker* w = nullptr;
  };
  mutable std::mutex m_;
  std::condition_variable pins_cv_;
  int pins_ = 0;  // stop_all() calls in progress
  Supervisor* sv_;
  std::uint64_t next_seq_ = 0;
  std::map<std::uint64_t, Entry> by_seq_;  // creation order
  std::unordered_map<std::string, std::uint64_t> by_name_;
  std::unordered_map<Worker*, std::uint64_t> seq_of_;
};

}  // namespace atask::detail
