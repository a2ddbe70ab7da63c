#pragma once
/// @file
/// Client: sends named tasks to the workers of a cluster through Redis, and
/// RemoteHandle<T>: what send() gives back. Any process can be a client; it
/// needs no Supervisor (the client runs one I/O thread of its own).
///
/// @code
///   atask::distributed::Client client({.broker = "redis://127.0.0.1:6379"});
///   auto h = client.send<int>("add", {2, 3});                 // RemoteHandle<int>
///   int five = h.get();                                       // blocks; or rethrows
///   auto big = client.send("crunch", {path}, {.priority = atask::Priority::high,
///                                             .time_limit = std::chrono::minutes(5)});
///   big.cancel();
/// @endcode
///
/// A task goes to the stream of its queue and priority and runs on a worker
/// consuming that queue (Consumer, consumer.hpp). docs/distributed.md has the
/// guarantees and the layout in Redis.

#include <atask/core/errors.hpp>
#include <atask/core/priority.hpp>
#include <atask/tasks/retry.hpp>
#include <atask/util/enum_names.hpp>
#include <atask/util/unique_function.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/array.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_to.hpp>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace atask {
class TaskRegistry;
}

namespace atask::distributed {

/// Where a remote task is: delayed (waiting for its countdown, eta or
/// retry back-off), queued (in its stream), started (a worker runs it),
/// then one of succeeded, failed, canceled, dead (in the dead-letter stream:
/// an unknown name, a malformed message, a task whose worker died on every
/// delivery, or one whose every retry failed). Named by to_string() /
/// from_string().
enum class RemoteStatus : unsigned char { queued, started, succeeded, failed, canceled, dead, delayed };
BOOST_DESCRIBE_ENUM(RemoteStatus, queued, started, succeeded, failed, canceled, dead, delayed)

/// The task failed on its worker (or was dead-lettered): type() is the
/// exception's type there ("std::runtime_error", "atask::NotFoundError",
/// "atask::DeliveryLimit", ...), message() its what().
class RemoteError : public Error {
 public:
  RemoteError(const std::string& what, std::string type, std::string message)
      : Error(what), type_(std::move(type)), message_(std::move(message)) {}
  const std::string& type() const noexcept { return type_; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string type_, message_;
};

struct ClientOptions {
  /// redis://[[user]:password@]host[:port][/db]; the password is never logged.
  std::string broker = "redis://127.0.0.1:6379";
  /// TCP connect plus AUTH and SELECT.
  std::chrono::milliseconds connect_timeout{5'000};
  /// While Redis is unreachable, send() keeps trying for this long before it
  /// throws BrokerError; 0 fails at once.
  std::chrono::milliseconds retry_for{0};
  /// How many tasks one round trip of send_many() carries; the next ones go
  /// when Redis has answered. Redis runs a client's pipelined commands a
  /// read at a time (16 KB, some 40 sends), so thousands in one write keep
  /// it busy turn after turn while the workers' calls wait between those
  /// turns: with workers running, 32 at a time got more tasks done end to
  /// end than 1,000 (docs/performance.md, "send_many in chunks"). A larger
  /// value enqueues faster when no worker runs meanwhile. At least 1.
  std::size_t send_chunk = 32;
  /// Defaults per task name (queue, priority) for send(); may be null. It
  /// must outlive the client.
  const TaskRegistry* registry = nullptr;
};

/// What one send() may set; what it leaves unset comes from the registry
/// (ClientOptions::registry) when it knows the name, else the default shown.
struct SendOptions {
  std::optional<std::string> queue{};  ///< "default"
  std::optional<Priority> priority{};  ///< normal
  /// The worker cancels the run after this long and the task fails with
  /// atask::TimeoutError; 0: no limit.
  std::chrono::milliseconds time_limit{0};
  /// How long the result (or error) stays in Redis after the task ends.
  std::chrono::seconds result_ttl{24 * 3600};
  /// Deliveries before a task whose worker dies every time goes to the
  /// dead-letter stream (a poison task).
  unsigned max_deliveries = 5;
  /// Runs no sooner than this long after Redis has it (Redis's clock).
  std::chrono::milliseconds countdown{0};
  /// Runs no sooner than this (wins over countdown; compared with Redis's
  /// clock, so the machines' clocks should agree).
  std::optional<std::chrono::system_clock::time_point> eta{};
  /// How a failed run is retried; unset: the task's registry default
  /// (NamedTaskOptions::retry, the client's registry if it has the task,
  /// else the worker's).
  std::optional<RetryPolicy> retry{};
  /// A second send with the same key, while Redis still has the first task
  /// (queued, delayed, running, or ended within its result_ttl), sends
  /// nothing and returns a handle to that task. send() only (a send_many()
  /// with more than one call refuses it).
  std::optional<std::string> idempotency_key{};
};

/// One step of a chain (Client::chain()): a task, its arguments after the
/// first (the step before's result), and how it is sent. countdown, eta and
/// idempotency_key are not for chain steps.
struct ChainStep {
  std::string name;
  boost::json::array args{};
  SendOptions options{};
};

/// What Redis knows of a remote task right now (RemoteHandle::info()).
struct RemoteInfo {
  std::string id;
  std::string name;
  std::string queue;
  Priority priority = Priority::normal;
  RemoteStatus status = RemoteStatus::queued;
  unsigned attempt = 0;  ///< deliveries that started it (1 for the first run)
  std::string worker;    ///< the consumer that runs or ran it ("" while queued)
  std::int64_t created_ms = 0, started_ms = 0, finished_ms = 0;  ///< Redis server time, Unix ms
  std::int64_t due_ms = 0;                ///< delayed (or was): when it is due, Redis server time, Unix ms
  std::string error_type, error_message;  ///< failed, canceled, dead; the last failure while retried
};

/// One run of a task that did not succeed (RemoteHandle::attempts()): an
/// error it threw, a time limit, a crash, or its worker lost
/// ("atask::WorkerLost").
struct RemoteAttempt {
  unsigned attempt = 0;
  std::string error_type, error_message;
  std::string worker;
  std::int64_t time_ms = 0;  ///< when it ended, Redis server time, Unix ms
};

/// The latest progress a task reported (report_progress(), consumer.hpp).
struct RemoteProgress {
  double fraction = 0;
  std::string message;
};

namespace detail {

class ClientImpl;
struct ClientAccess;

/// The outcome a handle waits for (library use).
class RemoteState {
 public:
  explicit RemoteState(std::string id, std::weak_ptr<ClientImpl> client)
      : id_(std::move(id)), client_(std::move(client)) {}
  const std::string& id() const noexcept { return id_; }

  /// Stores the final outcome and runs the continuations, once.
  void finish(RemoteStatus s, boost::json::value result, std::string etype, std::string emsg);
  /// Ends the wait with an error of this process (the client went away).
  void fail_here(std::exception_ptr e);
  bool done() const;
  bool wait_until(std::chrono::steady_clock::time_point t) const;
  /// The result, or throws: RemoteError (failed, dead), TaskCanceled.
  const boost::json::value& result() const;
  std::exception_ptr error() const;
  /// Runs f once the outcome is known (at once if it is), on the thread
  /// that learns it. Move-only callables welcome (asio handlers).
  void on_done(atask::detail::UniqueFunction f);

  RemoteInfo info() const;
  std::vector<RemoteAttempt> attempts() const;
  bool cancel() const;

  void set_progress(RemoteProgress p);
  std::optional<RemoteProgress> progress() const;
  void on_progress(std::function<void(const RemoteProgress&)> f);

 private:
  const std::string id_;
  std::weak_ptr<ClientImpl> client_;
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  RemoteStatus status_ = RemoteStatus::queued;
  boost::json::value result_;
  std::string etype_, emsg_;
  std::exception_ptr here_;
  std::vector<atask::detail::UniqueFunction> continuations_;
  std::optional<RemoteProgress> progress_;
  std::vector<std::function<void(const RemoteProgress&)>> progress_listeners_;
};

}  // namespace detail

/// A shared handle to one task sent to the cluster. Copies refer to the
/// same task; the last copy going does not cancel it.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
template <class T = boost::json::value>
class [[nodiscard]] RemoteHandle {
 public:
  using value_type = T;
  RemoteHandle() = default;
  explicit RemoteHandle(std::shared_ptr<detail::RemoteState> s) noexcept : s_(std::move(s)) {}

  bool valid() const noexcept { return static_cast<bool>(s_); }
  /// The task id (32 hex digits), the same on every machine.
  const std::string& id() const { return s("id").id(); }
  /// True once the outcome is known here.
  bool done() const { return s("done").done(); }

  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    return s("wait_for")
        .wait_until(std::chrono::steady_clock::now() +
                    std::chrono::ceil<std::chrono::steady_clock::duration>(d));
  }
  /// Blocks until the task ends; its result converted to T.
  /// @throws RemoteError when it failed or was dead-lettered, TaskCanceled
  ///         when it was canceled, ConversionError when the result does not
  ///         convert to T.
  T get() const {
    auto& st = s("get");
    st.wait_until(std::chrono::steady_clock::time_point::max());
    return convert(st.result());
  }
  /// get(), waiting at most d.
  /// @throws TimeoutError when the task has not ended by then.
  template <class Rep, class Period>
  T get_for(std::chrono::duration<Rep, Period> d) const {
    if (!wait_for(d)) throw TimeoutError("RemoteHandle::get_for() - task " + id() + " has not ended in time");
    return convert(s("get_for").result());
  }
  /// Asynchronous get(): completes with (exception_ptr, T) on the token's
  /// associated executor; `co_await h.async_get(asio::use_awaitable)`.
  template <class CompletionToken>
  auto async_get(CompletionToken&& token) const {
    auto st = s_;
    if (!st) throw Error("RemoteHandle::async_get() - empty handle");
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr, T)>(
        [st](auto handler) {
          auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
          st->on_done([st, handler = std::move(handler), work = std::move(work)]() mutable {
            auto ex = work.get_executor();
            boost::asio::post(ex, [st, handler = std::move(handler)]() mutable {
              std::exception_ptr e = st->error();
              T v{};
              if (!e) {
                try {
                  v = convert(st->result());
                } catch (...) {
                  e = std::current_exception();
                }
              }
              std::move(handler)(e, std::move(v));
            });
          });
        },
        token);
  }

  /// Asks Redis where the task is now (status, attempt, worker, times).
  /// @throws BrokerError when Redis cannot be reached; NotFoundError when
  ///         the task is unknown there (its result expired).
  RemoteInfo info() const { return s("info").info(); }
  RemoteStatus status() const { return info().status; }
  /// The runs that failed so far, oldest first (empty for a task that
  /// succeeded at once).
  /// @throws as info().
  std::vector<RemoteAttempt> attempts() const { return s("attempts").attempts(); }
  unsigned attempt() const { return info().attempt; }
  std::string worker() const { return info().worker; }

  /// The latest progress the task reported, as this client last heard it
  /// (nullopt before the first report).
  std::optional<RemoteProgress> progress() const { return s("progress").progress(); }
  /// Calls f with every progress report this client hears from now on (and
  /// with the latest one at once, if any), on the client's I/O thread: keep
  /// it short. Reports can be folded: a fast task's intermediate ones may not
  /// all arrive, the latest always does while the task runs.
  void on_progress(std::function<void(const RemoteProgress&)> f) const {
    s("on_progress").on_progress(std::move(f));
  }

  /// Calls f once, when the outcome is known here (at once if it is), on the
  /// thread that learns it - usually the client's I/O thread: keep it short.
  /// @throws Error for an empty f.
  void when_done(atask::detail::UniqueFunction f) const {
    if (!f) throw Error("RemoteHandle::when_done() - empty callable");
    s("when_done").on_done(std::move(f));
  }

  /// A queued task never runs and ends canceled (true). A running one is
  /// asked to stop, as TaskHandle::cancel() asks, by its worker within a
  /// heartbeat (true); it ends however its code decides. False when it had
  /// ended already.
  /// @throws BrokerError when Redis cannot be reached.
  bool cancel() const { return s("cancel").cancel(); }

 private:
  static T convert(const boost::json::value& v) {
    if constexpr (std::is_same_v<T, boost::json::value>) {
      return v;
    } else {
      try {
        return boost::json::value_to<T>(v);
      } catch (const std::exception& e) {
        throw ConversionError(std::string("RemoteHandle::get() - the result does not convert: ") + e.what());
      }
    }
  }
  detail::RemoteState& s(const char* call) const {
    if (!s_) throw Error(std::string("RemoteHandle::") + call + "() - empty handle");
    return *s_;
  }
  std::shared_ptr<detail::RemoteState> s_;
};

/// The members of a group (Client::group()).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
template <class T = boost::json::value>
class [[nodiscard]] GroupHandle {
 public:
  GroupHandle() = default;
  explicit GroupHandle(std::vector<RemoteHandle<T>> members) : members_(std::move(members)) {}
  const std::vector<RemoteHandle<T>>& members() const noexcept { return members_; }
  /// Blocks until every member has ended; their results in order.
  /// @throws the first failed member's error (as RemoteHandle::get()).
  std::vector<T> get() const {
    std::vector<T> out;
    for (auto& m : members_) out.push_back(m.get());
    return out;
  }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    const auto until = std::chrono::steady_clock::now() + d;
    for (auto& m : members_)
      if (!m.wait_for(
              std::max(until - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration{})))
        return false;
    return true;
  }
  /// Cancels every member not yet ended; true if any was.
  bool cancel() const {
    bool any = false;
    for (auto& m : members_) any = m.cancel() || any;
    return any;
  }

 private:
  std::vector<RemoteHandle<T>> members_;
};

/// Sends tasks and tracks their outcome: one command connection and one
/// subscriber connection to Redis, on an I/O thread of its own. Connects on
/// first use and reconnects by itself.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
class Client {
 public:
  /// Starts the I/O thread; connects on the first send().
  /// @throws OptionsError for a malformed broker URL.
  explicit Client(ClientOptions options = {});
  /// Handles still waiting end with BrokerError ("the client was destroyed").
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Enqueues task `name` with `args` (one JSON value per parameter).
  /// Returns once Redis has it.
  /// @throws OptionsError for a malformed queue name or option; BrokerError
  ///         when Redis cannot be reached within retry_for.
  template <class T = boost::json::value>
  RemoteHandle<T> send(std::string_view name, boost::json::array args, const SendOptions& o = {}) {
    return RemoteHandle<T>(send_state(name, std::move(args), o));
  }

  /// send() for many calls of one task, pipelined, ClientOptions::send_chunk
  /// per round trip: one handle per element of `args`, in order.
  template <class T = boost::json::value>
  std::vector<RemoteHandle<T>> send_many(std::string_view name, std::vector<boost::json::array> args,
                                         const SendOptions& o = {}) {
    std::vector<RemoteHandle<T>> out;
    for (auto& st : send_states(name, std::move(args), o)) out.emplace_back(std::move(st));
    return out;
  }

  /// Sends a chain: each step's result becomes the next one's first
  /// argument, and a step that fails (or is canceled, or dead-lettered)
  /// fails every later one with atask::ChainBroken. The chain lives in
  /// Redis: the next step is queued in the same atomic step that stores the
  /// result, so a worker killed in the middle resumes the chain where it was,
  /// and no finished step runs again. Returns the last step's handle (its
  /// result is the chain's; cancel() cancels every step not yet ended).
  /// Step k is the task "<id of the chain>:<k>" (client.handle() finds it).
  /// @throws OptionsError for no steps, an empty name, a step with countdown,
  ///         eta or idempotency_key; BrokerError as send().
  template <class T = boost::json::value>
  RemoteHandle<T> chain(std::vector<ChainStep> steps) {
    return RemoteHandle<T>(chain_state(std::move(steps)));
  }

  /// Sends tasks to run in parallel; the group's get() gives their results
  /// in order. Member k is the task "<id of the group>:<k>".
  /// @throws OptionsError for no members, and as chain() for a member.
  template <class T = boost::json::value>
  GroupHandle<T> group(std::vector<ChainStep> members) {
    std::vector<RemoteHandle<T>> hs;
    for (auto& st : group_states(std::move(members), std::nullopt)) hs.emplace_back(std::move(st));
    return GroupHandle<T>(std::move(hs));
  }

  /// A group and a callback: once every member has ended, the callback runs
  /// with the members' results (a JSON array, in order) as its first
  /// argument; if one did not succeed, the callback fails with
  /// atask::ChainBroken. The count of members still running is in Redis
  /// (atask:g:<id>), so the callback is sent once, by whichever member ends
  /// last, whatever worker dies meanwhile. Returns the callback's handle
  /// (the task "<id of the group>:cb").
  template <class T = boost::json::value>
  RemoteHandle<T> chord(std::vector<ChainStep> members, ChainStep callback) {
    return RemoteHandle<T>(group_states(std::move(members), std::move(callback)).back());
  }

  /// A handle to a task sent earlier (by any client), by id. Its outcome
  /// is not published to this client: it is looked up every 500 ms.
  template <class T = boost::json::value>
  RemoteHandle<T> handle(std::string_view id) {
    return RemoteHandle<T>(attach_state(id));
  }

  /// The dead-letter stream of a queue, oldest first (at most `limit`).
  struct DeadLetter {
    std::string entry;  ///< its id in the dead-letter stream (for requeue())
    std::string task_id, name, args;
    std::string error_type, error_message;
    unsigned attempt = 0;
    std::string worker;
    std::vector<RemoteAttempt> attempts;  ///< every run that failed, oldest first
  };
  std::vector<DeadLetter> dead_letters(std::string_view queue, std::size_t limit = 100);
  /// Puts a dead letter back into its queue (same task id, attempt 0);
  /// returns the task id.
  /// @throws BrokerError for an unknown or malformed entry.
  std::string requeue(std::string_view queue, std::string_view entry);
  /// Removes every dead letter of a queue; returns how many there were.
  std::size_t purge_dead(std::string_view queue);
  /// Tasks waiting in a queue, per priority (low .. critical).
  std::array<std::size_t, priority_count> queued(std::string_view queue);
  /// Tasks of a queue waiting for their time (countdown, eta, retry).
  std::size_t delayed(std::string_view queue);

  // ---- inspection (src/distributed/inspect.cpp) ---------------------------------------------

  /// A worker (Consumer) of the cluster as Redis knows it: what it
  /// registered, and what its last heartbeat said. Times are Redis server
  /// time, Unix ms.
  struct WorkerRecord {
    std::string name, host;
    int pid = 0;
    std::vector<std::string> queues;
    std::size_t prefetch = 0;
    std::int64_t started_ms = 0;
    std::int64_t heartbeat_ms = 0;      ///< its last heartbeat
    std::int64_t heartbeat_age_ms = 0;  ///< now - heartbeat_ms, by Redis' clock
    std::vector<std::string> running;   ///< ids of the tasks it runs (as of its last heartbeat)
    std::uint64_t succeeded = 0, failed = 0;
    std::uint64_t retried = 0;  ///< failed runs it put back for another attempt
    std::uint64_t reaped = 0;   ///< tasks of dead workers its sweeps handed back (redeliveries)
    std::vector<std::pair<std::string, std::string>> labels;  ///< ConsumerOptions::labels
  };
  /// Every registered worker, by name. A worker that died stays listed
  /// (with a growing heartbeat age) until a sweep reaps it.
  std::vector<WorkerRecord> workers();

  /// One queue at one moment.
  struct QueueStats {
    std::string queue;
    std::array<std::size_t, priority_count> queued{};  ///< waiting, per priority (low .. critical)
    std::size_t running = 0;                           ///< delivered to a worker, not acknowledged
    std::size_t delayed = 0;                           ///< waiting for their time (countdown, eta, retry)
    std::size_t retrying = 0;  ///< of `delayed`: waiting for a retry after a failed run
    std::size_t dead = 0;
    std::int64_t oldest_ms = 0;  ///< age of the oldest waiting task (0: none waits)
  };
  /// Every queue a task was ever sent to, and every queue a worker
  /// consumes, sorted by name.
  std::vector<std::string> queues();
  QueueStats queue_stats(std::string_view queue);
  /// Cancels every task of `queue` that no worker has taken yet, queued or
  /// delayed (each ends canceled, "purged from queue <queue>"); returns how
  /// many. Tasks running on workers are left alone.
  std::size_t purge(std::string_view queue);

  const std::string& broker() const noexcept;

 private:
  std::shared_ptr<detail::RemoteState> send_state(std::string_view name, boost::json::array args,
                                                  const SendOptions& o);
  std::vector<std::shared_ptr<detail::RemoteState>> send_states(std::string_view name,
                                                                std::vector<boost::json::array> args,
                                                                const SendOptions& o);
  std::shared_ptr<detail::RemoteState> attach_state(std::string_view id);
  std::shared_ptr<detail::RemoteState> chain_state(std::vector<ChainStep> steps);
  std::vector<std::shared_ptr<detail::RemoteState>> group_states(std::vector<ChainStep> members,
                                                                 std::optional<ChainStep> callback);
  std::vector<std::shared_ptr<detail::RemoteState>> run_states(std::vector<std::string> command,
                                                               std::vector<std::string> ids);
  friend struct detail::ClientAccess;  // inspect.cpp's way to the command connection
  std::shared_ptr<detail::ClientImpl> impl_;
};

}  // namespace atask::distributed
