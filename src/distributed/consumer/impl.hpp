// The inside of distributed::Consumer, shared by the files of this folder,
// one per concern:
//   consumer.cpp    the public class, options, start and staged stop
//   connection.cpp  connections to Redis, joining the cluster, retried calls
//   fetch.cpp       reading the streams, and promoting due delayed tasks
//   run.cpp         running one task: start, submit, outcome, progress
//   liveness.cpp    cancel requests, heartbeats, the reaper, leaving
// Threads: everything but start(), stop() and report_progress() runs on the
// supervisor's io_context thread.
#pragma once

#include <atask/distributed/consumer.hpp>
#include <atask/supervisor/supervisor.hpp>
#include <atask/tasks/registry.hpp>

#include "distributed/redis/connection.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace spdlog {
class logger;
}

namespace atask::distributed {

namespace asio = boost::asio;
namespace json = boost::json;
using redis::cmd;
using redis::Connection;
using redis::Reply;
using std::chrono::milliseconds;

struct Consumer::Impl : std::enable_shared_from_this<Consumer::Impl> {
  struct Stream {
    std::string queue, key, dead;
    Priority priority;
  };
  struct Flight {
    const Stream* stream = nullptr;
    std::string entry;  // the stream entry's id
    std::string id;
    std::string attempt;
    // Started in Redis already, by the read (atask_idle) or by a hand-off
    // to this worker while it waited: what atask_start would have returned.
    std::optional<Reply> started;
    TaskHandle<json::value> handle;
    std::uint64_t local_id = 0;  // the handle's, for report_progress()
    bool user_canceled = false, stopping = false, timed_out = false;
    bool cancel_asked = false;  // a cancel request came before the flight did
    // Progress: the latest report not yet sent, and whether one is on its way.
    std::optional<std::pair<double, std::string>> progress;
    bool progress_sending = false;
  };

  Impl(Supervisor& s, const TaskRegistry& t, ConsumerOptions o);

  // ---- helpers ----------------------------------------------------------------------------------

  static std::string host_name();
  // The type and message of a task's error, as the client will see them
  // ("std::runtime_error", "atask::ConversionError"; a child's own type).
  static std::pair<std::string, std::string> error_of(std::exception_ptr e);
  static bool is_canceled(std::exception_ptr e);
  static asio::awaitable<void> sleep_for(milliseconds d);
  static std::string join(const std::vector<std::string>& v, const char* sep);

  // ---- lifecycle (any thread but the io_context's) --------------------------------------------

  void start();

  void stop();

  // A loop of this consumer ended (the last one out closes what is left).
  void loop_ended();

  // ---- connections ------------------------------------------------------------------------------

  asio::awaitable<std::shared_ptr<Connection>> open(const char* role);

  // Waits for the connection attempt in progress (another coroutine's) to
  // end, made or failed.
  asio::awaitable<void> connection_settled();

  // The command connection (start, complete): connected, the functions
  // loaded, the groups there and this worker registered.
  asio::awaitable<std::shared_ptr<Connection>> command();

  // Loads the functions, creates the groups, registers this worker.
  asio::awaitable<void> join_cluster(Connection& c);

  // The limits this worker knows, for every worker to apply (the last
  // writer wins): its tasks' (a task without limits lifts them) and those of
  // the queues named in queue_limits.
  Connection::Command limits_command() const;

  Connection::Command register_command() const;

  std::string labels_json() const;

  // A call on the command connection, retried through lost connections
  // while `keep_trying` says so. An error reply throws BrokerError.
  asio::awaitable<Reply> call(Connection::Command c, std::function<bool()> keep_trying);

  void note_lost(const std::string& why);

  // ---- fetching ---------------------------------------------------------------------------------

  static asio::awaitable<void> fetch_loop(std::shared_ptr<Impl> self);

  // Reads entries and dispatches them: (blocking) whatever comes first on
  // any stream or the inbox, or "0": this consumer's own pending entries
  // that this process does not run (a reply lost with a connection).
  // Returns how many.
  asio::awaitable<std::size_t> read(std::string from, std::size_t count, bool blocking);

  // atask_idle: acknowledges the inbox entries taken, reads at most `count`
  // new entries (streams in priority order), started in the same call, and
  // runs them; when there are none, this worker is waiting idle on its
  // queues until its next call, and tasks queued meanwhile come to its
  // inbox. Returns how many.
  asio::awaitable<std::size_t> idle(std::size_t count);

  std::size_t dispatch_all(const Reply& r, bool own);
  const Stream* find_stream(const std::string& key) const;
  // Runs the entry (run_one) unless it runs here already. `started`: its
  // start, done in Redis already; `handed`: by a hand-off (counted).
  // Returns 1 if it was launched.
  std::size_t launch(const Stream* s, const std::string& entry, const std::string& id,
                     std::optional<Reply> started, bool handed);

  static asio::awaitable<void> ack_only(std::shared_ptr<Impl> self, const Stream* s, std::string entry);

  // ---- delayed tasks ----------------------------------------------------------------------------

  // A task of our queues was delayed until `due` (server ms; 0: unknown):
  // look sooner if it is due before what we wait for. (io_context thread)
  void delayed_at(std::int64_t due);

  // Moves due tasks (countdown, eta, a retry's back-off) from the delayed
  // sets of our queues to their streams, then sleeps until the next one is
  // due, or a message says an earlier one came, or `block` at the most (a
  // safety net for a missed message). Every worker of a queue does it; the
  // function moves each task once.
  static asio::awaitable<void> delay_loop(std::shared_ptr<Impl> self);

  // ---- running one task --------------------------------------------------------------------------

  // `key`: the flight's key in `flights` (stream and entry id).
  static asio::awaitable<void> run_one(std::shared_ptr<Impl> self, std::string key);

  static asio::awaitable<void> time_limit(std::shared_ptr<Impl> self, std::string entry, milliseconds d);

  void done_with(const std::string& entry);

  // ---- progress ---------------------------------------------------------------------------------

  struct Reporter {
    std::weak_ptr<Impl> impl;
    std::string entry;
  };
  static std::mutex& reporters_mutex() {
    static std::mutex m;
    return m;
  }
  static std::unordered_map<std::uint64_t, Reporter>& reporters() {
    static std::unordered_map<std::uint64_t, Reporter> r;
    return r;
  }

  // The report of the local task `task_id`, if a consumer runs it: false if none does.
  static bool report(std::uint64_t task_id, double fraction, std::string_view message);
  // The process pool's sink: reports of the tasks running in its children.
  static void report_from_child(std::uint64_t task_id, double fraction, std::string_view message) {
    (void)report(task_id, fraction, message);
  }

  // From the task's thread: the latest report wins; one FCALL at a time.
  void send_progress(std::string entry, double fraction, std::string message);

  static asio::awaitable<void> progress_loop(std::shared_ptr<Impl> self, std::string entry);

  // ---- cancel requests ---------------------------------------------------------------------------

  void cancel_by_id(const std::string& id);

  // atask_cancel publishes on atask:cancel:<this worker>: a running task
  // hears it at once. (A message missed while disconnected still arrives
  // with the next heartbeat, which returns the tasks flagged to cancel.)
  static asio::awaitable<void> cancel_loop(std::shared_ptr<Impl> self);

  // ---- heartbeats and the reaper --------------------------------------------------------------

  static asio::awaitable<void> liveness_loop(std::shared_ptr<Impl> self);

  Supervisor& sv;
  const TaskRegistry& tasks;
  ConsumerOptions opt;
  redis::Endpoint endpoint;
  std::shared_ptr<spdlog::logger> log;
  std::string name;
  std::vector<Stream> streams;
  std::string inbox;  // detail::inbox_key(name)

  // io_context thread only:
  std::shared_ptr<Connection> fetch_conn, cmd_conn, hb_conn, sub_conn;
  bool connecting = false;
  std::size_t refill_at = 1;              // free slots before the fetch loop reads again
  std::map<std::string, Flight> flights;  // by stream entry id
  std::vector<std::string> taken;         // inbox entries read, to acknowledge with the next atask_idle
  bool blocking_read = false;             // the fetch loop is in its blocking read
  // Task ids a cancel request named that ran nowhere here yet: started for
  // this worker (a hand-off, a read's reply) and on their way. The latest
  // 1,024; launch() looks here.
  std::deque<std::string> unmatched_cancels;
  std::unique_ptr<asio::steady_timer> slot, hb_wake, sub_wake, due_wake;
  // Never expires: canceled when a connection attempt ends, which wakes
  // whoever waits for it (connection_settled()).
  std::unique_ptr<asio::steady_timer> connect_done;
  std::int64_t next_due = -1;  // server ms of the earliest delayed task, as last seen; -1: none
  // While the delay loop's atask_promote call runs: the earliest due
  // announced meanwhile (-1: none; 0: one not named), for the loop to
  // weigh against the call's answer (promote_wait.hpp).
  bool promoting = false;
  std::int64_t heard_due = -1;
  // When the last heartbeat that Redis answered was sent (liveness loop).
  std::optional<std::chrono::steady_clock::time_point> last_heartbeat;

  // Shared:
  std::atomic<bool> stopping{false}, leaving{false}, connected{false};
  std::atomic<std::uint64_t> received{0}, succeeded{0}, failed{0}, canceled{0}, dead_lettered{0}, stale{0},
      reaped{0}, retried{0}, handed{0}, clock_steps{0};
  std::mt19937_64 rng{std::random_device{}()};  // io_context thread only: retry jitter
  double unit() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }
  std::mutex m;
  std::condition_variable cv;
  std::atomic<std::size_t> in_flight{0};
  int running_loops = 0;
  bool started = false, stop_called = false, finished = false;
};
}  // namespace atask::distributed
