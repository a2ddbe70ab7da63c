#pragma once
// What a child process knows about the task it runs, for atask::this_task.
// Written by the child loop; the stop slot by the parent, through shared memory.

#include <atomic>
#include <cstdint>
#include <string_view>

namespace atask::detail::child {

/// The running task's id; 0 outside a child, or between tasks.
extern std::atomic<std::uint64_t> task_id;
/// This child's stop slot in the memory it shares with the parent (the id
/// of the task whose stop was requested); nullptr outside a child.
extern std::atomic<std::uint64_t>* stop_slot;
/// steady_clock nanoseconds past which the soft time limit is over; 0 = none.
extern std::atomic<std::int64_t> soft_deadline_ns;

/// In a child: a stop was requested or the soft time limit is over.
bool stop_requested() noexcept;

/// In a child: sends a progress report of the running task to the parent
/// (a frame on the child's socket, written by the child loop's function);
/// false when it could not be written. nullptr outside a child.
extern bool (*write_progress)(double fraction, std::string_view message) noexcept;

}  // namespace atask::detail::child

namespace atask::detail {

/// Parent side: what receives the progress reports of the tasks running in
/// the process pool's children (the distributed consumer sets it, to send
/// them on to the task's client). nullptr: they are dropped.
using ChildProgressSink = void (*)(std::uint64_t task_id, double fraction, std::string_view message);
extern std::atomic<ChildProgressSink> child_progress_sink;

}  // namespace atask::detail
