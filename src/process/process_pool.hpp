#pragma once
// The parent's side of the process pool. Owned by the supervisor; its I/O
// (child sockets, the fork server's control socket, hard-limit timers) runs
// on the supervisor's io_context thread. Other threads queue tasks, cancel
// them and read counters under `m_`; every decision about which task runs
// in which child is taken on the loop thread (pump()).

#include "process/fork_server.hpp"

#include <atask/process/detail/process_job.hpp>
#include <atask/process/pool_options.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace atask::detail {

class ProcessPool {
 public:
  /// Forks the fork server (call before the supervisor starts threads).
  ProcessPool(ProcessPoolOptions o, std::string id, std::shared_ptr<spdlog::logger> log);
  ~ProcessPool();
  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  /// Forks the children; from now on the pool's I/O runs on ctx's thread.
  void start(boost::asio::io_context& ctx);
  /// Queues a started-to-be task (takes a reference). Throws LifecycleError
  /// when the pool is stopping or its fork server is gone.
  void enqueue(ProcessJob& job);
  void remove_queued(ProcessJob& job) noexcept;
  /// True if the task will end canceled; false when its reply came first.
  bool cancel_running(ProcessJob& job) noexcept;
  void request_stop(ProcessJob& job) noexcept;
  /// Ends every child and the fork server and reaps them. Not on the loop
  /// thread; the loop must still run if start() was called. Idempotent.
  void stop() noexcept;

  ProcessPoolInfo info() const;

 private:
  enum class ChildState : unsigned char { forking, idle, busy, retiring, dying };
  // A second descriptor of a child's socket, for requests written off the
  // loop thread: shared, so that it stays open while such a write runs even
  // if the loop closes the child meanwhile.
  struct Fd {
    explicit Fd(int f) noexcept : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd();
    int fd;
  };
  struct Child {
    std::uint64_t key = 0;
    int pid = 0;
    int slot = -1;  // its stop slot (-1: none free)
    ChildState state = ChildState::forking;
    bool extra = false;            // forked for a critical task beyond the pool's size
    bool counted_forking = false;  // an extra child counted in extra_forking_ until it is up or gone
    bool last_task = false;        // its current task is its max_tasks_per_child-th
    bool killed = false;           // we killed it (time limit, cancel)
    bool exited = false;           // its exit was reported: never give it a task again
    bool canceling = false;        // cancel() claimed its task (under m_): a reply no longer settles it
    std::size_t sent = 0;          // tasks sent
    ProcessJob* job = nullptr;     // holds a reference to job->task()
    std::uint64_t job_id = 0;
    std::optional<boost::asio::local::stream_protocol::socket> sock;
    std::shared_ptr<Fd> wfd;
    std::optional<boost::asio::steady_timer> hard;
    std::vector<char> in;  // bytes read, not yet a whole frame
    std::size_t in_used = 0;
  };
  // Intrusive FIFO through ProcessJob::q_prev/q_next.
  struct JobList {
    ProcessJob* head = nullptr;
    ProcessJob* tail = nullptr;
    bool empty() const noexcept { return head == nullptr; }
    void push_back(ProcessJob* j) noexcept;
    ProcessJob* pop_front() noexcept;
    void remove(ProcessJob* j) noexcept;
  };

  // A task taken for a child (holds a reference to the task).
  struct Dispatch {
    ProcessJob* job = nullptr;
    std::uint64_t key = 0, id = 0;
    std::shared_ptr<Fd> fd;
    int slot = -1;
  };

  // -- any thread -------------------------------------------------------------------
  void schedule_pump() noexcept;
  int limit_for(std::size_t priority) const noexcept;
  bool take_locked(Dispatch& d, bool& need_extra);
  void launch(Dispatch& d, bool on_loop);

  // -- loop thread ------------------------------------------------------------------
  void pump();
  void arm_limit(Child& c, std::chrono::milliseconds lim);
  void spawn(bool extra);
  void replenish();
  void read_ctl();
  void on_ctl(const CtlMsg& m);
  void read_child(Child& c);
  void on_bytes(Child& c);
  void on_reply(Child& c, std::uint64_t id, std::uint8_t kind, std::string_view payload);
  void on_exit(int pid, int status);
  void kill_child(Child& c, std::exception_ptr why, bool canceled);
  void end_taken(ProcessJob& j, std::exception_ptr e, bool canceled) noexcept;
  void send_kill(int pid, int sig, std::uint64_t task) noexcept;
  void server_gone(const std::string& why);
  void fail_all(const std::string& why);
  void shutdown_on_loop() noexcept;
  Child* find_pid(int pid) noexcept;
  Child* child_running(const ProcessJob* j) noexcept;
  bool runs(const Child& c, std::uint64_t id) noexcept;
  Child* find_key(std::uint64_t key) noexcept;
  void erase(Child& c) noexcept;
  std::chrono::milliseconds hard_limit(const ProcessJob& j) const noexcept;
  std::chrono::milliseconds soft_limit(const ProcessJob& j) const noexcept;
  /// Waits for the fork server (10 s, then SIGKILL) and reaps it: its wait
  /// status if it ended by itself, nothing if it had to be killed.
  std::optional<int> reap_server() noexcept;

  const ProcessPoolOptions opt_;
  const std::string id_;
  std::shared_ptr<spdlog::logger> log_;
  StopSlot* slots_ = nullptr;    // shared with every child (mmap), stop_slot_count of them
  std::vector<int> free_slots_;  // under m_
  ForkServer server_;
  boost::asio::io_context* ctx_ = nullptr;
  std::optional<boost::asio::posix::stream_descriptor> ctl_;
  std::uint64_t next_key_ = 0;                      // loop thread
  std::optional<boost::asio::steady_timer> retry_;  // re-fork after a failed fork

  mutable std::mutex m_;
  std::map<std::uint64_t, std::unique_ptr<Child>> children_;  // by key; erased on the loop thread only
  std::array<JobList, 4> queues_{};
  std::array<int, 4> queued_{}, running_{};
  int running_total_ = 0;
  int extra_forking_ = 0;
  bool closed_ = false;  // stopping: no new tasks
  bool broken_ = false;  // the fork server is gone
  std::string broken_why_;
  bool stopped_ = false;
  std::uint64_t completed_ = 0, spawned_ = 0, crashed_ = 0, killed_ = 0, recycled_ = 0, extra_retired_ = 0;
  std::atomic<bool> pump_posted_{false};
  int spawn_failures_ = 0;                 // in a row
  std::array<char, 64 * 1024> scratch_{};  // loop thread: socket reads
};

}  // namespace atask::detail
