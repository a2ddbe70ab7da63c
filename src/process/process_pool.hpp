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
#include <chrono>
#include <functional>
#include <utility>
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
  /// A queued task about to be canceled: false if a child holding it ahead
  /// claimed it first (then it is started now).
  bool claim_unstarted(ProcessJob& job) noexcept;
  void request_stop(ProcessJob& job) noexcept;
  /// Ends every child and the fork server and reaps them. Not on the loop
  /// thread; the loop must still run if start() was called. Idempotent.
  void stop() noexcept;

  ProcessPoolInfo info() const;

 private:
  enum class ChildState : unsigned char { forking, idle, busy, retiring, dying };
  // A second descriptor of a child's socket, for requests written off the
  // loop thread: shared, so that it stays open while such a write runs even
  // if the loop closes the child meanwhile. Requests go out in the order
  // they were taken for the child (their `seq`), whichever thread writes
  // them: a task sent ahead must never overtake the one before it.
  struct Fd {
    explicit Fd(int f) noexcept : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd();
    /// Queues requests number `seq` to `seq + count - 1`, in `frame` (empty:
    /// a dispatch that was dropped), and
    /// writes what it can without blocking. True when bytes remain and the
    /// caller must have the loop write them (flush_child()).
    bool put(std::uint64_t seq, std::string frame, std::uint64_t count = 1);
    /// Under wm: writes what it can; true when bytes remain.
    bool write_some() noexcept;
    int fd;
    std::mutex wm;
    std::uint64_t next = 0;  // seq of the next request to go out
    std::map<std::uint64_t, std::pair<std::string, std::uint64_t>> early;  // taken later, put earlier
    std::string out;                                                       // bytes to write, in order
    std::size_t out_at = 0;
    bool loop_writes = false;  // the loop writes the rest once the socket is writable
  };
  // A task held ahead by a busy child (see ClaimWord).
  struct Held {
    ProcessJob* job = nullptr;  // holds the reference its queue held
    std::uint64_t id = 0, offer = 0;
    int index = 0;         // its claim word in the child's ring
    bool claimed = false;  // it runs (a take-back found claim_running set): its start report is on its way
    bool cancel = false;   // cancel() came after the child claimed it: it ends canceled
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
    std::size_t sent = 0;          // tasks started in it (sent to it idle, or claimed from ahead)
    std::vector<Held> held;        // tasks held ahead, in the order sent
    unsigned ring_used = 0;        // bits: its claim words in use
    int job_ring = -1;             // the claim word of its task, claimed from ahead, until its reply: the
                                   // child may still be setting claim_running in it
    std::uint64_t next_seq = 0;    // requests taken for it (Fd::put order)
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
    /// Back in its place by q_seq (a task taken back goes before later ones).
    void insert_sorted(ProcessJob* j) noexcept;
    ProcessJob* pop_front() noexcept;
    void remove(ProcessJob* j) noexcept;
  };

  // A task taken for a child (holds a reference to the task).
  struct Dispatch {
    ProcessJob* job = nullptr;
    std::uint64_t key = 0, id = 0, seq = 0;
    std::shared_ptr<Fd> fd;
    int slot = -1;
  };
  // A task taken to be sent ahead (holds a reference while the loop writes it).
  struct Ahead {
    ProcessJob* job = nullptr;
    std::uint64_t key = 0, id = 0, seq = 0, offer = 0;
    int index = 0;
    std::shared_ptr<Fd> fd;
  };

  // -- any thread -------------------------------------------------------------------
  void schedule_pump() noexcept;
  int limit_for(std::size_t priority) const noexcept;
  bool take_locked(Dispatch& d, bool& need_extra);
  void launch(Dispatch& d, bool on_loop);
  std::string request(const ProcessJob& j, std::uint64_t id, std::uint64_t offer, int index) const;
  // Prefetch (under m_).
  bool can_hold_locked(const Child& c) const noexcept;
  bool prefetch_room_locked() const noexcept;
  void prefetch_locked(std::vector<Ahead>& out);
  bool rebalance_locked();
  ProcessJob* take_back_locked(Child& c, std::size_t i, bool revoke_claimed) noexcept;
  void idle_if_free_locked(Child& c) noexcept;
  void requeue_locked(ProcessJob* j) noexcept;
  std::vector<Held> take_back_all_locked(Child& c) noexcept;
  ClaimWord& claim_word(const Child& c, int index) const noexcept;
  void end_ran(std::vector<Held>& ran, const std::function<std::exception_ptr(const Held&)>& why) noexcept;

  // -- loop thread ------------------------------------------------------------------
  void pump();
  void arm_limit(Child& c, std::chrono::milliseconds lim,
                 std::chrono::steady_clock::time_point from = std::chrono::steady_clock::now());
  void send_ahead(Ahead* a, std::size_t n);
  void flush_child(Child& c);
  void on_started(Child& c, std::uint64_t id, std::int64_t claimed_ns, std::uint64_t offer);
  void spawn(bool extra);
  void replenish();
  void read_ctl();
  void on_ctl(const CtlMsg& m);
  void read_child(Child& c);
  void on_bytes(Child& c);
  void on_reply(Child& c, std::uint64_t id, std::uint8_t kind, std::string_view payload);
  void on_exit(int pid, int status);
  void drain(Child& c);
  Child* settle_before_kill(std::uint64_t key, std::uint64_t id, bool canceling);
  void kill_canceled(ProcessJob* j);
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
  ClaimWord* claims_ = nullptr;  // the same mapping, after the slots: claim_ring per slot
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
  int held_total_ = 0;            // tasks held ahead (counted in queued_ too)
  std::uint64_t next_offer_ = 0;  // claim offers
  std::uint64_t next_q_seq_ = 0;  // queue order
  bool closed_ = false;           // stopping: no new tasks
  bool broken_ = false;           // the fork server is gone
  std::string broken_why_;
  bool stopped_ = false;
  std::uint64_t completed_ = 0, spawned_ = 0, crashed_ = 0, killed_ = 0, recycled_ = 0, extra_retired_ = 0;
  std::atomic<bool> pump_posted_{false};
  bool pump_later_ = false;                // loop thread: pump once the replies read are handled
  int spawn_failures_ = 0;                 // in a row
  std::array<char, 64 * 1024> scratch_{};  // loop thread: socket reads
};

}  // namespace atask::detail
