// The consumer's connections to Redis: opening, joining the cluster, calls
// retried through a lost connection.

#include "distributed/consumer/impl.hpp"

#include "distributed/keys.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

asio::awaitable<std::shared_ptr<Connection>> Consumer::Impl::open(const char* role) {
  // A named local, not a temporary in the co_await: GCC 12 destroys a
  // class-type temporary there twice.
  redis::ConnectOptions co{.timeout = opt.connect_timeout,
                           .client_name = "atask-worker-" + std::string(role)};
  auto ex = co_await asio::this_coro::executor;
  co_return co_await Connection::connect(ex, endpoint, std::move(co));
}

asio::awaitable<void> Consumer::Impl::connection_settled() {
  while (connecting) {
    boost::system::error_code ec;
    co_await connect_done->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<std::shared_ptr<Connection>> Consumer::Impl::command() {
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

asio::awaitable<void> Consumer::Impl::join_cluster(Connection& c) {
  {
    co_await c.call(cmd("FUNCTION", "LOAD", "REPLACE", std::string(detail::functions_source())));
    std::vector<Connection::Command> groups;
    for (auto& s : streams)
      groups.push_back(cmd("XGROUP", "CREATE", s.key, std::string(detail::group), "0", "MKSTREAM"));
    groups.push_back(cmd("XGROUP", "CREATE", inbox, std::string(detail::group), "0", "MKSTREAM"));
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

Connection::Command Consumer::Impl::limits_command() const {
  Connection::Command c = cmd("FCALL", "atask_limits", "1", "atask:limits");
  const auto add = [&c](std::string scope, const TaskLimits& l) {
    c.push_back(std::move(scope));
    c.push_back(std::to_string(l.max_starts) + " " + std::to_string(l.max_starts ? l.per.count() : 0) + " " +
                std::to_string(l.max_running));
  };
  for (const auto& n : tasks.names())
    if (auto info = tasks.find(n)) add("t:" + n, info->options.limits);
  for (const auto& [q, l] : opt.queue_limits) add("q:" + q, l);
  return c;
}

Connection::Command Consumer::Impl::register_command() const {
  std::string queues = join(opt.queues, " "), keys;
  for (auto& s : streams) keys += (keys.empty() ? "" : " ") + s.key;
  return cmd("FCALL", "atask_register", "2", std::string(detail::workers_key), detail::worker_key(name), name,
             "host", host_name(), "pid", std::to_string(::getpid()), "queues", queues, "streams", keys,
             "prefetch", std::to_string(opt.prefetch), "labels", labels_json());
}

std::string Consumer::Impl::labels_json() const {
  json::object o;
  for (const auto& [k, v] : opt.labels) o[k] = v;
  return json::serialize(o);
}

asio::awaitable<Reply> Consumer::Impl::call(Connection::Command c, std::function<bool()> keep_trying) {
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

void Consumer::Impl::note_lost(const std::string& why) {
  if (connected.exchange(false))
    log->warn("consumer {}: lost Redis at {}: {}", name, endpoint.to_string(), why);
}

}  // namespace atask::distributed
