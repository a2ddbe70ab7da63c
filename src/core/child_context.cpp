// What this_task sees in a child process. The state lives in the core, so
// that this_task (src/core/task.cpp) reads it without depending on the
// process pool; the child loop (src/process/fork_server.cpp) writes it.

#include "core/child_context.hpp"

#include <chrono>

namespace atask::detail {

// -- what this_task sees in a child ------------------------------------------------
namespace child {
std::atomic<std::uint64_t> task_id{0};
std::atomic<std::uint64_t>* stop_slot = nullptr;
std::atomic<std::int64_t> soft_deadline_ns{0};
bool (*write_progress)(double, std::string_view) noexcept = nullptr;

bool stop_requested() noexcept {
  const auto id = task_id.load(std::memory_order_relaxed);
  if (id == 0) return false;
  if (stop_slot && stop_slot->load(std::memory_order_relaxed) == id) return true;
  const auto d = soft_deadline_ns.load(std::memory_order_relaxed);
  return d != 0 && std::chrono::steady_clock::now().time_since_epoch().count() >= d;
}
}  // namespace child

std::atomic<ChildProgressSink> child_progress_sink{nullptr};

}  // namespace atask::detail
