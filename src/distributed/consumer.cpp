#include <atask/distributed/consumer.hpp>
#include <atask/supervisor/supervisor.hpp>
#include <atask/tasks/registry.hpp>

#include "distributed/keys.hpp"
#include "distributed/retry_json.hpp"
#include "distributed/redis/connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <cxxabi.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <condition_variable>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>
#include <algorithm>
#include <mutex>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

namespace asio = boost::asio;
namespace json = boost::json;
using redis::cmd;
using redis::Connection;
using redis::Reply;
using std::chrono::milliseconds;

namespace {

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  return buf;
}

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (!d) return name;
  std::string out = d;
  std::free(d);
  return out;
}

// The type and message of a task's error, as the client will see them
// ("std::runtime_error", "atask::ConversionError"; a child's own type).
std::pair<std::string, std::string> describe(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const ChildError& x) {
    return {x.type(), x.message()};
  } catch (const std::exception& x) {
    return {demangle(typeid(x).name()), x.what()};
  } catch (...) {
    return {"unknown", "a non-standard exception"};
  }
}

bool is_canceled(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const TaskCanceled&) {
    return true;
  } catch (...) {
    return false;
  }
}

asio::awaitable<void> sleep_for(milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  boost::system::error_code ec;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace

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
    TaskHandle<json::value> handle;
    std::uint64_t local_id = 0;  // the handle's, for report_progress()
    bool user_canceled = false, stopping = false, timed_out = false;
    // Progress: the latest report not yet sent, and whether one is on its way.
    std::optional<std::pair<double, std::string>> progress;
    bool progress_sending = false;
  };

  Impl(Supervisor& s, const TaskRegistry& t, ConsumerOptions o)
      : sv(s), tasks(t), opt(std::move(o)), endpoint(redis::parse_url(opt.broker)), log(s.logger_ptr()) {
    if (opt.queues.empty())
      throw OptionsError("distributed::Consumer - no queue to consume (queues is empty)");
    for (auto& q : opt.queues) detail::check_queue_name("distributed::Consumer", q);
    for (auto& [q, l] : opt.queue_limits) {
      detail::check_queue_name("distributed::Consumer", q);
      l.check("distributed::Consumer - queue_limits");
    }
    const auto positive = [](milliseconds d, const char* what) {
      if (d.count() <= 0)
        throw OptionsError(std::string("distributed::Consumer - ") + what + " must be positive");
    };
    positive(opt.heartbeat, "heartbeat");
    positive(opt.dead_after, "dead_after");
    positive(opt.reap_every, "reap_every");
    positive(opt.block, "block");
    positive(opt.connect_timeout, "connect_timeout");
    positive(opt.max_backoff, "max_backoff");
    if (opt.stop_timeout.count() < 0) throw OptionsError("distributed::Consumer - stop_timeout is negative");
    if (opt.time_limit.count() < 0) throw OptionsError("distributed::Consumer - time_limit is negative");
    for (const auto& [k, v] : opt.labels)
      if (k.empty() ||
          k.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
              std::string::npos)
        throw OptionsError("distributed::Consumer - the label name '" + k +
                           "' may hold only letters, digits and _ . -");
    if (opt.dead_after <= opt.heartbeat)
      throw OptionsError("distributed::Consumer - dead_after (" + std::to_string(opt.dead_after.count()) +
                         " ms) must be longer than heartbeat (" + std::to_string(opt.heartbeat.count()) +
                         " ms): a live worker would be taken for dead");
    name = opt.name.empty()
               ? host_name() + ":" + std::to_string(::getpid()) + ":" + detail::random_id().substr(0, 8)
               : opt.name;
    if (name.find_first_of(" \t\r\n") != std::string::npos)
      throw OptionsError("distributed::Consumer - the name '" + name + "' has white space");
    // Higher priorities first; within one, the queues in the given order.
    for (auto it = all_priorities.rbegin(); it != all_priorities.rend(); ++it)
      for (auto& q : opt.queues) streams.push_back({q, detail::stream_key(q, *it), detail::dead_key(q), *it});
  }

  // ---- lifecycle (any thread but the io_context's) --------------------------------------------

  void start() {
    if (opt.prefetch == 0)
      opt.prefetch = 4 * static_cast<std::size_t>(std::max(1, sv.info().pool.limits.pool_size));
    // Refills wait for a quarter of the slots: one read for several tasks,
    // not a pass over every stream for each task that ends.
    refill_at = std::max<std::size_t>(1, opt.prefetch / 4);
    auto& io = sv.io_context();
    slot = std::make_unique<asio::steady_timer>(io);
    hb_wake = std::make_unique<asio::steady_timer>(io);
    sub_wake = std::make_unique<asio::steady_timer>(io);
    due_wake = std::make_unique<asio::steady_timer>(io);
    connect_done = std::make_unique<asio::steady_timer>(io, asio::steady_timer::time_point::max());
    running_loops = 4;
    asio::co_spawn(io, delay_loop(shared_from_this()), asio::detached);
    asio::co_spawn(io, fetch_loop(shared_from_this()), asio::detached);
    asio::co_spawn(io, liveness_loop(shared_from_this()), asio::detached);
    asio::co_spawn(io, cancel_loop(shared_from_this()), asio::detached);
    log->info("consumer {}: consuming {} from {} (prefetch {})", name, join(opt.queues, ","),
              endpoint.to_string(), opt.prefetch);
  }

  void stop() {
    auto& io = sv.io_context();
    {
      std::unique_lock lk(m);
      if (stop_called) {  // a second caller waits for the first one's stop
        cv.wait_for(lk, 2 * opt.stop_timeout + opt.connect_timeout + milliseconds(10'000),
                    [&] { return finished; });
        return;
      }
      stop_called = true;
      if (!started) {
        finished = true;
        return;
      }
      if (io.get_executor().running_in_this_thread())
        throw LifecycleError("distributed::Consumer::stop() - called on the supervisor's io_context thread");
    }
    asio::post(io, [self = shared_from_this()] {
      self->stopping = true;
      if (self->fetch_conn) self->fetch_conn->close();
      if (self->slot) self->slot->cancel();
      if (self->due_wake) self->due_wake->cancel();
    });
    std::unique_lock lk(m);
    if (!cv.wait_for(lk, opt.stop_timeout, [&] { return in_flight == 0; })) {
      lk.unlock();
      log->warn("consumer {}: {} tasks still running after stop_timeout ({} ms): asking them to stop", name,
                in_flight.load(), opt.stop_timeout.count());
      asio::post(io, [self = shared_from_this()] {
        for (auto& [e, f] : self->flights) {
          f.stopping = true;
          if (f.handle.valid()) (void)f.handle.cancel();
        }
      });
      lk.lock();
      if (!cv.wait_for(lk, std::max(opt.stop_timeout, milliseconds(1000)), [&] { return in_flight == 0; }))
        log->warn("consumer {}: {} tasks ignore their stop request; they go back to their queues now", name,
                  in_flight.load());
    }
    leaving = true;
    lk.unlock();
    asio::post(io, [self = shared_from_this()] {
      if (self->slot) self->slot->cancel();
      if (self->hb_wake) self->hb_wake->cancel();
      if (self->sub_wake) self->sub_wake->cancel();
    });
    lk.lock();
    // The liveness loop unregisters (handing back what is left) and ends.
    cv.wait_for(lk, opt.connect_timeout + milliseconds(5000), [&] { return finished; });
  }

  // ---- connections ------------------------------------------------------------------------------

  asio::awaitable<std::shared_ptr<Connection>> open(const char* role) {
    // A named local, not a temporary in the co_await: GCC 12 destroys a
    // class-type temporary there twice.
    redis::ConnectOptions co{.timeout = opt.connect_timeout,
                             .client_name = "atask-worker-" + std::string(role)};
    auto ex = co_await asio::this_coro::executor;
    co_return co_await Connection::connect(ex, endpoint, std::move(co));
  }

  // Waits for the connection attempt in progress (another coroutine's) to
  // end, made or failed.
  asio::awaitable<void> connection_settled() {
    while (connecting) {
      boost::system::error_code ec;
      co_await connect_done->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // The command connection (start, complete): connected, the functions
  // loaded, the groups there and this worker registered.
  asio::awaitable<std::shared_ptr<Connection>> command() {
    co_await connection_settled();
    if (cmd_conn && cmd_conn->is_open()) co_return cmd_conn;
    // Stopping: a new connection only for the outcome of a task still here.
    if (stopping && flights.empty()) throw BrokerError("the worker is stopping");
    connecting = true;
    std::exception_ptr failed;
    try {
      auto c = co_await open("cmd");
      // Once leaving (a late outcome of a task that ignored the stop), only
      // the connection: this worker must not join the cluster again.
      if (!leaving) co_await join_cluster(*c);
      cmd_conn = std::move(c);
      if (!connected.exchange(true)) log->info("consumer {}: connected to {}", name, endpoint.to_string());
    } catch (...) {
      failed = std::current_exception();
    }
    connecting = false;
    connect_done->cancel();
    if (failed) std::rethrow_exception(failed);
    co_return cmd_conn;
  }

  // Loads the functions, creates the groups, registers this worker.
  asio::awaitable<void> join_cluster(Connection& c) {
    {
      co_await c.call(cmd("FUNCTION", "LOAD", "REPLACE", std::string(detail::functions_source())));
      std::vector<Connection::Command> groups;
      for (auto& s : streams)
        groups.push_back(cmd("XGROUP", "CREATE", s.key, std::string(detail::group), "0", "MKSTREAM"));
      for (auto& r : co_await c.pipeline(groups))
        if (r.is_error() && r.str.find("BUSYGROUP") == std::string::npos)
          throw BrokerError("XGROUP CREATE: " + r.str);
      co_await c.call(register_command());
      co_await c.call(limits_command());
      auto policy = co_await c.command(cmd("CONFIG", "GET", "maxmemory-policy"));
      if (policy.elements.size() == 2 && policy.elements[1].str != "noeviction")
        log->warn(
            "consumer {}: Redis at {} has maxmemory-policy '{}': under memory pressure it may evict "
            "queued tasks and results; set it to 'noeviction'",
            name, endpoint.to_string(), policy.elements[1].str);
    }
  }

  // The limits this worker knows, for every worker to apply (the last
  // writer wins): its tasks' (a task without limits lifts them) and those of
  // the queues named in queue_limits.
  Connection::Command limits_command() const {
    Connection::Command c = cmd("FCALL", "atask_limits", "1", "atask:limits");
    const auto add = [&c](std::string scope, const TaskLimits& l) {
      c.push_back(std::move(scope));
      c.push_back(std::to_string(l.max_starts) + " " + std::to_string(l.max_starts ? l.per.count() : 0) +
                  " " + std::to_string(l.max_running));
    };
    for (const auto& n : tasks.names())
      if (auto info = tasks.find(n)) add("t:" + n, info->options.limits);
    for (const auto& [q, l] : opt.queue_limits) add("q:" + q, l);
    return c;
  }

  Connection::Command register_command() const {
    std::string queues = join(opt.queues, " "), keys;
    for (auto& s : streams) keys += (keys.empty() ? "" : " ") + s.key;
    return cmd("FCALL", "atask_register", "2", std::string(detail::workers_key), detail::worker_key(name),
               name, "host", host_name(), "pid", std::to_string(::getpid()), "queues", queues, "streams",
               keys, "prefetch", std::to_string(opt.prefetch), "labels", labels_json());
  }

  std::string labels_json() const {
    json::object o;
    for (const auto& [k, v] : opt.labels) o[k] = v;
    return json::serialize(o);
  }

  // A call on the command connection, retried through lost connections
  // while `keep_trying` says so. An error reply throws BrokerError.
  asio::awaitable<Reply> call(Connection::Command c, std::function<bool()> keep_trying) {
    auto backoff = milliseconds(50);
    for (;;) {
      std::string lost;
      try {
        auto conn = co_await command();
        Reply r = co_await conn->command(c);
        if (!r.is_error()) co_return r;
        lost = "!" + r.str;  // an error reply: not retried
      } catch (const std::exception& e) {
        lost = e.what();
      }
      if (lost[0] == '!') throw BrokerError(c[0] + " " + c[1] + ": " + lost.substr(1));
      note_lost(lost);
      if (!keep_trying()) throw BrokerError(lost);
      co_await sleep_for(backoff);
      backoff = std::min(backoff * 2, opt.max_backoff);
    }
  }

  void note_lost(const std::string& why) {
    if (connected.exchange(false))
      log->warn("consumer {}: lost Redis at {}: {}", name, endpoint.to_string(), why);
  }

  // ---- fetching ---------------------------------------------------------------------------------

  static asio::awaitable<void> fetch_loop(std::shared_ptr<Impl> self) {
    auto& me = *self;
    auto backoff = milliseconds(50);
    bool reread_own = true;  // after a (re)connect: entries ours in Redis but not here
    while (!me.stopping) {
      std::string failed;
      try {
        co_await me.command();
        if (me.stopping) break;  // stopped while connecting: open nothing more
        if (!me.fetch_conn || !me.fetch_conn->is_open()) {
          me.fetch_conn = co_await me.open("fetch");
          reread_own = true;
        }
        if (reread_own) {
          co_await me.read(std::string("0"), 0, false);
          reread_own = false;
        }
        const std::size_t free =
            me.opt.prefetch > me.flights.size() ? me.opt.prefetch - me.flights.size() : 0;
        if (free < me.refill_at) {
          me.slot->expires_at(asio::steady_timer::time_point::max());
          boost::system::error_code ec;
          co_await me.slot->async_wait(asio::redirect_error(asio::use_awaitable, ec));
          continue;
        }
        if (co_await me.read(std::string(">"), free, false) == 0 && !me.stopping)
          co_await me.read(std::string(">"), 1, true);
        backoff = milliseconds(50);
      } catch (const std::exception& e) {
        failed = e.what();
      }
      if (!failed.empty() && !me.stopping) {
        me.note_lost(failed);
        if (me.fetch_conn) me.fetch_conn->close();
        co_await sleep_for(backoff);
        backoff = std::min(backoff * 2, me.opt.max_backoff);
      }
    }
    // A fetch connection opened while the stop was on its way: nothing may
    // keep the io_context busy once this worker has left.
    if (me.fetch_conn) me.fetch_conn->close();
    me.fetch_conn.reset();
    me.loop_ended();
  }

  // Reads entries and dispatches them. from ">" : new entries, at most
  // `count` in all, streams in priority order, or (blocking) whatever comes
  // first on any stream; "0": this consumer's own pending entries that this
  // process does not run (a reply lost with a connection). Returns how many.
  asio::awaitable<std::size_t> read(std::string from, std::size_t count, bool blocking) {
    std::size_t got = 0;
    auto conn = fetch_conn;  // (the member may be reset while we wait)
    if (!conn) throw BrokerError("the fetch connection is closed");
    if (blocking || from == "0") {
      Connection::Command c = cmd("XREADGROUP", "GROUP", std::string(detail::group), name);
      if (blocking) {
        c.push_back("COUNT");
        c.push_back(std::to_string(count));
        c.push_back("BLOCK");
        c.push_back(std::to_string(opt.block.count()));
      }
      c.push_back("STREAMS");
      for (auto& s : streams) c.push_back(s.key);
      for (std::size_t i = 0; i < streams.size(); ++i) c.push_back(from);
      auto r = co_await conn->call(std::move(c));
      got += dispatch_all(r, from == "0");
      co_return got;
    }
    for (auto& s : streams) {
      if (count == got || stopping) break;
      auto r = co_await conn->call(cmd("XREADGROUP", "GROUP", std::string(detail::group), name, "COUNT",
                                       std::to_string(count - got), "STREAMS", s.key, ">"));
      got += dispatch_all(r, false);
    }
    co_return got;
  }

  std::size_t dispatch_all(const Reply& r, bool own) {
    std::size_t n = 0;
    for (const auto& st : r.elements) {  // [[key, [[id, [f, v, ...]], ...]], ...]
      if (st.elements.size() != 2) continue;
      const Stream* s = nullptr;
      for (auto& x : streams)
        if (x.key == st.elements[0].str) s = &x;
      if (!s) continue;
      for (const auto& e : st.elements[1].elements) {
        if (e.elements.size() != 2) continue;
        const std::string& entry = e.elements[0].str;
        std::string id;
        const auto& f = e.elements[1].elements;  // nil for an entry deleted meanwhile
        for (std::size_t i = 0; i + 1 < f.size(); i += 2)
          if (f[i].str == "id") id = f[i + 1].str;
        if (own && f.empty()) {
          // Deleted from the stream while pending: nothing to run.
          asio::co_spawn(sv.io_context(), ack_only(shared_from_this(), s, entry), asio::detached);
          continue;
        }
        // Entry ids are unique per stream only: two streams can hand out
        // the same id in the same millisecond.
        const std::string key = s->key + " " + entry;
        if (flights.count(key)) continue;  // ours and running here
        auto& fl = flights[key];
        fl.stream = s;
        fl.entry = entry;
        fl.id = id;
        ++in_flight;
        ++received;
        ++n;
        asio::co_spawn(sv.io_context(), run_one(shared_from_this(), key), asio::detached);
      }
    }
    return n;
  }

  static asio::awaitable<void> ack_only(std::shared_ptr<Impl> self, const Stream* s, std::string entry) {
    try {
      co_await self->call(cmd("XACK", s->key, std::string(detail::group), entry), [] { return false; });
    } catch (const std::exception&) {
    }
  }

  // ---- delayed tasks ----------------------------------------------------------------------------

  // A task of our queues was delayed until `due` (server ms; 0: unknown):
  // look sooner if it is due before what we wait for. (io_context thread)
  void delayed_at(std::int64_t due) {
    if (due != 0 && next_due >= 0 && due >= next_due) return;
    if (due != 0) next_due = due;
    if (due_wake) due_wake->cancel();
  }

  // Moves due tasks (countdown, eta, a retry's back-off) from the delayed
  // sets of our queues to their streams, then sleeps until the next one is
  // due, or a message says an earlier one came, or `block` at the most (a
  // safety net for a missed message). Every worker of a queue does it; the
  // function moves each task once.
  static asio::awaitable<void> delay_loop(std::shared_ptr<Impl> self) {
    auto& me = *self;
    constexpr int limit = 200;
    Connection::Command promote = cmd("FCALL", "atask_promote", std::to_string(me.opt.queues.size()));
    for (auto& q : me.opt.queues) promote.push_back(detail::delayed_key(q));
    promote.push_back(std::to_string(limit));
    auto backoff = milliseconds(50);
    while (!me.stopping) {
      milliseconds wait = me.opt.block;
      try {
        Reply r = co_await me.call(promote, [&me] { return !me.stopping; });
        backoff = milliseconds(50);
        if (r.elements.size() == 3) {
          me.next_due = r.elements[1].integer;
          if (r.elements[0].integer >= limit) continue;  // more are due
          if (me.next_due >= 0)
            wait =
                std::clamp(milliseconds(me.next_due - r.elements[2].integer), milliseconds(0), me.opt.block);
        }
      } catch (const std::exception&) {
        wait = backoff;  // (the fetch loop reports the lost connection)
        backoff = std::min(backoff * 2, me.opt.max_backoff);
      }
      if (me.stopping) break;
      me.due_wake->expires_after(wait);
      boost::system::error_code ec;
      co_await me.due_wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    me.loop_ended();
  }

  // ---- running one task --------------------------------------------------------------------------

  // `key`: the flight's key in `flights` (stream and entry id).
  static asio::awaitable<void> run_one(std::shared_ptr<Impl> self, std::string key) {
    auto& me = *self;
    const auto until_stopped = [&me] { return !me.leaving; };
    Flight* fl = &me.flights[key];
    const std::string entry = fl->entry;
    const Stream& s = *fl->stream;
    const std::string id = fl->id;
    std::string outcome, a, b, c;  // for atask_complete
    try {
      if (id.empty()) {
        co_await me.call(cmd("FCALL", "atask_reject", "2", s.key, s.dead, entry,
                             "the message has no task id (field 'id'); it was not sent by an atask client"),
                         until_stopped);
        ++me.dead_lettered;
        me.log->error("consumer {}: entry {} of {} has no task id: moved to {}", me.name, entry, s.key,
                      s.dead);
        me.done_with(key);
        co_return;
      }
      const std::string hash = detail::task_key(id);
      Reply r = co_await me.call(cmd("FCALL", "atask_start", "3", hash, s.key, s.dead, entry, me.name, id),
                                 until_stopped);
      fl = &me.flights[key];  // (the map may have changed meanwhile; the node did not)
      const std::string what = r.elements.empty() ? "" : r.elements[0].str;
      me.log->debug("consumer {}: task {} entry {}: start says {}", me.name, id, entry, what);
      if (what == "dead") {
        ++me.dead_lettered;
        me.log->error("consumer {}: task {} was delivered too many times without finishing: moved to {}",
                      me.name, id, s.dead);
      }
      if (what != "run" || r.elements.size() != 7) {
        me.done_with(key);
        co_return;
      }
      const std::string task = r.elements[1].str;
      fl->attempt = r.elements[3].str;
      long long limit = std::atoll(r.elements[4].str.c_str());
      const auto known = me.tasks.find(task);
      if (limit == 0 && known) limit = known->options.time_limit.count();  // the task's default
      if (limit == 0) limit = me.opt.time_limit.count();                   // the worker's default
      if (r.elements[5].str == "1") {
        outcome = "canceled", a = "atask::TaskCanceled", b = "canceled before it started";
      } else if (!known) {
        outcome = "dead", a = "atask::NotFoundError",
        b = "no task named '" + task + "' is registered on worker " + me.name;
      } else {
        boost::system::error_code ec;
        json::value args = json::parse(r.elements[2].str, ec);
        if (ec || !args.is_array()) {
          outcome = "dead", a = "atask::MalformedMessage",
          b = "the arguments of task '" + task + "' are not a JSON array";
        } else if (me.stopping) {
          // Taken while stopping: not run; it goes back with the rest.
          me.done_with(key);
          co_return;
        } else {
          {
            // Under the reporters' lock: a report_progress() from the task
            // waits until the task is known there.
            std::lock_guard lk(reporters_mutex());
            fl->handle =
                me.tasks.submit(me.sv, task, std::move(args.as_array()), CallOptions{.priority = s.priority});
            fl->local_id = fl->handle.id();
            reporters()[fl->local_id] = {self, key};
          }
          if (limit > 0)
            asio::co_spawn(me.sv.io_context(), time_limit(self, key, milliseconds(limit)), asio::detached);
          std::exception_ptr err;
          json::value result;
          try {
            result = co_await fl->handle.async_get(asio::use_awaitable);
          } catch (...) {
            err = std::current_exception();
          }
          fl = &me.flights[key];
          if (!err) {
            outcome = "succeeded", a = json::serialize(result);
          } else if (fl->timed_out) {
            outcome = "failed", a = "atask::TimeoutError",
            b = "time limit of " + std::to_string(limit) + " ms exceeded";
          } else if (is_canceled(err) && !fl->user_canceled) {
            // Stopped by our own shutdown (or the supervisor's): not the
            // task's outcome. It goes back to its queue.
            me.done_with(key);
            co_return;
          } else if (is_canceled(err)) {
            outcome = "canceled", a = "atask::TaskCanceled", b = "canceled while running";
          } else {
            auto [type, message] = describe(err);
            outcome = "failed", a = type, b = message;
          }
          if (outcome == "failed") {
            // Retried? The send's policy, else the task's default here.
            RetryPolicy policy = known->options.retry;
            if (!r.elements[6].str.empty()) {
              try {
                policy = detail::retry_from_json(r.elements[6].str);
              } catch (const std::exception& e) {
                me.log->warn("consumer {}: task {}: its retry policy is unreadable ({}): not retried",
                             me.name, id, e.what());
                policy = RetryPolicy{};
              }
            }
            const auto n = static_cast<unsigned>(std::strtoul(me.flights[key].attempt.c_str(), nullptr, 10));
            if (policy.max_attempts > 1 && policy.retries(a)) {
              if (n < policy.max_attempts) {
                outcome = "retry";
                c = std::to_string(policy.delay_before(n, me.unit()).count());
              } else {
                outcome = "dead";  // every attempt failed: the dead letters, with the history
              }
            }
          }
        }
      }
      me.log->debug("consumer {}: task {} entry {}: {}", me.name, id, entry, outcome);
      Reply done = co_await me.call(cmd("FCALL", "atask_complete", "3", hash, s.key, s.dead, entry, me.name,
                                        me.flights[key].attempt, outcome, a, b, c),
                                    until_stopped);
      if (done.str == "stale") {
        ++me.stale;
        me.log->warn(
            "consumer {}: task {} finished here after it was handed to another worker (this worker "
            "was presumed dead); its outcome was not stored",
            me.name, id);
      } else if (outcome == "succeeded") {
        ++me.succeeded;
      } else if (outcome == "failed") {
        ++me.failed;
      } else if (outcome == "canceled") {
        ++me.canceled;
      } else if (outcome == "retry") {
        ++me.retried;
        me.log->info("consumer {}: task {} attempt {} failed ({}: {}); retry in {} ms", me.name, id,
                     me.flights[key].attempt, a, b, c);
      } else if (outcome == "dead") {
        ++me.dead_lettered;
        me.log->error("consumer {}: task {}: {}: moved to {}", me.name, id, b, s.dead);
      }
    } catch (const std::exception& e) {
      // Redis unreachable until the stop: the entry stays pending under this
      // worker's name; unregister or a reaper hands it back.
      me.log->warn("consumer {}: task {} (entry {}): {}", me.name, id, entry, e.what());
    }
    me.done_with(key);
  }

  static asio::awaitable<void> time_limit(std::shared_ptr<Impl> self, std::string entry, milliseconds d) {
    co_await sleep_for(d);
    auto it = self->flights.find(entry);
    if (it == self->flights.end() || !it->second.handle.valid() || it->second.handle.done()) co_return;
    it->second.timed_out = true;
    (void)it->second.handle.cancel();
  }

  void done_with(const std::string& entry) {
    if (auto it = flights.find(entry); it != flights.end() && it->second.local_id != 0) {
      std::lock_guard lk(reporters_mutex());
      reporters().erase(it->second.local_id);
    }
    flights.erase(entry);
    // The last late outcome after leaving: nothing may keep the
    // supervisor's io_context busy now.
    if (leaving && flights.empty()) cmd_conn.reset();
    {
      std::lock_guard lk(m);
      --in_flight;
    }
    cv.notify_all();
    if (slot) slot->cancel();
  }

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

  // From the task's thread: the latest report wins; one FCALL at a time.
  void send_progress(std::string entry, double fraction, std::string message) {
    asio::post(sv.io_context(), [self = shared_from_this(), entry = std::move(entry), fraction,
                                 message = std::move(message)]() mutable {
      auto it = self->flights.find(entry);
      if (it == self->flights.end()) return;
      it->second.progress.emplace(fraction, std::move(message));
      if (it->second.progress_sending) return;
      it->second.progress_sending = true;
      asio::co_spawn(self->sv.io_context(), progress_loop(self, entry), asio::detached);
    });
  }

  static asio::awaitable<void> progress_loop(std::shared_ptr<Impl> self, std::string entry) {
    for (;;) {
      auto it = self->flights.find(entry);
      if (it == self->flights.end()) co_return;
      if (!it->second.progress) {
        it->second.progress_sending = false;
        co_return;
      }
      auto [fraction, message] = std::move(*it->second.progress);
      it->second.progress.reset();
      Connection::Command c = cmd("FCALL", "atask_progress", "1", detail::task_key(it->second.id), self->name,
                                  it->second.attempt, fmt::format("{}", fraction), std::move(message));
      try {
        co_await self->call(std::move(c), [] { return false; });
      } catch (const std::exception&) {
        // Progress is best effort: the outcome is what must arrive.
      }
    }
  }

  // ---- cancel requests ---------------------------------------------------------------------------

  void cancel_by_id(const std::string& id) {
    for (auto& [e, f] : flights)
      if (f.id == id && f.handle.valid() && !f.user_canceled) {
        f.user_canceled = true;
        (void)f.handle.cancel();
        log->info("consumer {}: task {} asked to cancel", name, f.id);
      }
  }

  // atask_cancel publishes on atask:cancel:<this worker>: a running task
  // hears it at once. (A message missed while disconnected still arrives
  // with the next heartbeat, which returns the tasks flagged to cancel.)
  static asio::awaitable<void> cancel_loop(std::shared_ptr<Impl> self) {
    auto& me = *self;
    std::weak_ptr<Impl> weak = self;
    auto backoff = milliseconds(50);
    while (!me.leaving) {
      std::string failed;
      try {
        if (!me.sub_conn || !me.sub_conn->is_open()) {
          auto c = co_await me.open("cancel");
          c->on_message([weak](const std::string& channel, const std::string& payload) {
            auto i = weak.lock();
            if (!i) return;
            if (channel == detail::cancel_channel(i->name))
              i->cancel_by_id(payload);
            else
              i->delayed_at(std::atoll(payload.c_str()));
          });
          // One SUBSCRIBE per channel: Redis confirms each channel with a
          // reply of its own.
          std::vector<Connection::Command> subs{cmd("SUBSCRIBE", detail::cancel_channel(me.name))};
          for (auto& q : me.opt.queues) subs.push_back(cmd("SUBSCRIBE", detail::due_channel(q)));
          co_await c->pipeline(std::move(subs));
          me.sub_conn = std::move(c);
          me.delayed_at(0);  // messages missed while unsubscribed: look now
          backoff = milliseconds(50);
        }
        me.sub_wake->expires_after(me.opt.heartbeat);
        boost::system::error_code ec;
        co_await me.sub_wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (me.leaving) break;
        co_await me.sub_conn->call(cmd("PING"));  // finds a lost connection
      } catch (const std::exception& e) {
        failed = e.what();
      }
      if (!failed.empty() && !me.leaving) {
        if (me.sub_conn) me.sub_conn->close();
        co_await sleep_for(backoff);
        backoff = std::min(backoff * 2, me.opt.max_backoff);
      }
    }
    me.sub_conn.reset();
    me.loop_ended();
  }

  // ---- heartbeats and the reaper --------------------------------------------------------------

  static asio::awaitable<void> liveness_loop(std::shared_ptr<Impl> self) {
    auto& me = *self;
    auto next_reap = std::chrono::steady_clock::now();
    while (!me.leaving) {
      // First a period's wait: the fetch loop registers this worker.
      me.hb_wake->expires_after(me.opt.heartbeat);
      boost::system::error_code ec;
      co_await me.hb_wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (me.leaving) break;
      std::string failed;
      try {
        if (!me.hb_conn || !me.hb_conn->is_open()) me.hb_conn = co_await me.open("heartbeat");
        Connection::Command hb = cmd("FCALL", "atask_heartbeat", "", std::string(detail::workers_key),
                                     detail::worker_key(me.name));
        for (auto& [e, f] : me.flights)
          if (f.handle.valid()) hb.push_back(detail::task_key(f.id));
        hb[2] = std::to_string(hb.size() - 3);
        hb.push_back(me.name);
        // For Client::workers(): what this worker has done so far.
        hb.push_back(std::to_string(me.succeeded.load()));
        hb.push_back(std::to_string(me.failed.load()));
        hb.push_back(std::to_string(me.retried.load()));
        hb.push_back(std::to_string(me.reaped.load()));
        Reply r = co_await me.hb_conn->call(std::move(hb));
        if (r.elements.size() == 2) {
          if (r.elements[0].integer == 1) {
            me.log->warn(
                "consumer {}: Redis did not know this worker (presumed dead, or Redis lost its data): "
                "registering again",
                me.name);
            co_await me.hb_conn->call(me.register_command());
          }
          for (const auto& id : r.elements[1].elements) me.cancel_by_id(id.str);
        }
        if (std::chrono::steady_clock::now() >= next_reap) {
          next_reap = std::chrono::steady_clock::now() + me.opt.reap_every;
          const auto lock_ms = std::max<long long>(1, me.opt.reap_every.count() * 9 / 10);
          Reply rr = co_await me.hb_conn->call(
              cmd("FCALL", "atask_reap", "2", std::string(detail::workers_key),
                  std::string(detail::reap_lock_key), std::to_string(me.opt.dead_after.count()),
                  std::to_string(lock_ms), me.name));
          for (std::size_t i = 0; i + 1 < rr.elements.size(); i += 2) {
            me.reaped += static_cast<std::uint64_t>(rr.elements[i + 1].integer);
            me.log->warn(
                "consumer {}: worker {} sent no heartbeat for {} ms: {} of its tasks went back to "
                "their queues",
                me.name, rr.elements[i].str, me.opt.dead_after.count(), rr.elements[i + 1].integer);
          }
        }
      } catch (const std::exception& e) {
        failed = e.what();
      }
      if (!failed.empty()) {
        me.note_lost(failed);
        if (me.hb_conn) me.hb_conn->close();
      }
    }
    // Leaving: hand back what is still ours and leave the cluster. A join
    // still on its way would register this worker again after it left (and
    // keep a connection open): let it end first.
    co_await me.connection_settled();
    try {
      if (!me.hb_conn || !me.hb_conn->is_open()) me.hb_conn = co_await me.open("heartbeat");
      Reply r =
          co_await me.hb_conn->call(cmd("FCALL", "atask_unregister", "2", std::string(detail::workers_key),
                                        detail::worker_key(me.name), me.name));
      if (r.integer > 0)
        me.log->warn("consumer {}: {} unfinished tasks went back to their queues", me.name, r.integer);
    } catch (const std::exception& e) {
      me.log->warn(
          "consumer {}: could not leave the cluster cleanly ({}); the reaper hands back its tasks "
          "after {} ms",
          me.name, e.what(), me.opt.dead_after.count());
    }
    // Let the connections go here, on the io_context: the Impl may be
    // destroyed on another thread.
    me.hb_conn.reset();
    if (me.flights.empty()) me.cmd_conn.reset();
    me.fetch_conn.reset();
    me.log->info("consumer {}: stopped ({} received, {} succeeded, {} failed)", me.name, me.received.load(),
                 me.succeeded.load(), me.failed.load());
    me.loop_ended();
  }

  void loop_ended() {
    if (running_loops == 1 && flights.empty()) {
      // The last loop out: whatever a loop opened on its way out goes now
      // (an open connection keeps the supervisor's io_context running).
      for (auto* c : {&fetch_conn, &cmd_conn, &hb_conn, &sub_conn}) {
        if (*c) (*c)->close();
        c->reset();
      }
    }
    {
      std::lock_guard lk(m);
      if (--running_loops == 0) finished = true;
    }
    cv.notify_all();
  }

  static std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (auto& x : v) out += (out.empty() ? "" : sep) + x;
    return out;
  }

  Supervisor& sv;
  const TaskRegistry& tasks;
  ConsumerOptions opt;
  redis::Endpoint endpoint;
  std::shared_ptr<spdlog::logger> log;
  std::string name;
  std::vector<Stream> streams;

  // io_context thread only:
  std::shared_ptr<Connection> fetch_conn, cmd_conn, hb_conn, sub_conn;
  bool connecting = false;
  std::size_t refill_at = 1;              // free slots before the fetch loop reads again
  std::map<std::string, Flight> flights;  // by stream entry id
  std::unique_ptr<asio::steady_timer> slot, hb_wake, sub_wake, due_wake;
  // Never expires: canceled when a connection attempt ends, which wakes
  // whoever waits for it (connection_settled()).
  std::unique_ptr<asio::steady_timer> connect_done;
  std::int64_t next_due = -1;  // server ms of the earliest delayed task, as last seen; -1: none

  // Shared:
  std::atomic<bool> stopping{false}, leaving{false}, connected{false};
  std::atomic<std::uint64_t> received{0}, succeeded{0}, failed{0}, canceled{0}, dead_lettered{0}, stale{0},
      reaped{0}, retried{0};
  std::mt19937_64 rng{std::random_device{}()};  // io_context thread only: retry jitter
  double unit() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }
  std::mutex m;
  std::condition_variable cv;
  std::atomic<std::size_t> in_flight{0};
  int running_loops = 0;
  bool started = false, stop_called = false, finished = false;
};

bool report_progress(double fraction, std::string_view message) {
  const std::uint64_t id = this_task::id();
  if (id == 0) return false;
  Consumer::Impl::Reporter r;
  {
    std::lock_guard lk(Consumer::Impl::reporters_mutex());
    auto it = Consumer::Impl::reporters().find(id);
    if (it == Consumer::Impl::reporters().end()) return false;
    r = it->second;
  }
  auto impl = r.impl.lock();
  if (!impl) return false;
  impl->send_progress(std::move(r.entry), std::clamp(fraction, 0.0, 1.0), std::string(message));
  return true;
}

Consumer::Consumer(Supervisor& sv, const TaskRegistry& tasks, ConsumerOptions options)
    : impl_(std::make_shared<Impl>(sv, tasks, std::move(options))) {
  std::weak_ptr<Impl> weak = impl_;
  try {
    sv.add_step({.name = "consumer:" + impl_->name,
                 .depends_on = {"pool"},
                 .start =
                     [weak](Supervisor&) {
                       if (auto i = weak.lock()) {
                         {
                           std::lock_guard lk(i->m);
                           if (i->stop_called) return;
                           i->started = true;
                         }
                         i->start();
                       }
                     },
                 .stop =
                     [weak](Supervisor&) {
                       if (auto i = weak.lock()) i->stop();
                     }});
  } catch (const LifecycleError& e) {
    throw LifecycleError(std::string("distributed::Consumer - create it before Supervisor::start(): ") +
                         e.what());
  }
}

Consumer::~Consumer() {
  try {
    stop();
  } catch (const std::exception& e) {
    impl_->log->error("consumer {}: {}", impl_->name, e.what());
  }
}

void Consumer::stop() {
  impl_->stop();
}

const std::string& Consumer::name() const noexcept {
  return impl_->name;
}

ConsumerInfo Consumer::info() const {
  auto& i = *impl_;
  return {i.name,          i.connected.load(), i.in_flight.load(),     i.received.load(), i.succeeded.load(),
          i.failed.load(), i.canceled.load(),  i.dead_lettered.load(), i.stale.load(),    i.reaped.load(),
          i.retried.load()};
}

}  // namespace atask::distributed
