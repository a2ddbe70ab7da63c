#pragma once
// The client's state behind Client and RemoteHandle: its I/O thread, the
// command and subscriber connections, and the handles waiting for an
// outcome. impl.cpp has the connections, the subscription and how an
// outcome settles a handle; remote_state.cpp a handle's calls; send.cpp,
// workflows.cpp and queues.cpp Client's calls.

#include <atask/distributed/client.hpp>

#include "distributed/keys.hpp"
#include "distributed/redis/connection.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace atask::distributed::detail {

namespace asio = boost::asio;

/// A task hash's "state" field as a status.
/// @throws BrokerError for a state this version does not know.
RemoteStatus parse_status(const std::string& s);
/// An integer reply, or a string one holding a number; 0 otherwise.
std::int64_t to_int(const redis::Reply& r);
/// The "history" field of a task hash (lua/00_library.lua, remember()).
std::vector<RemoteAttempt> parse_history(const std::string& text);

class ClientImpl : public std::enable_shared_from_this<ClientImpl> {
 public:
  using Reply = redis::Reply;

  explicit ClientImpl(ClientOptions o)
      : options(std::move(o)), endpoint(redis::parse_url(options.broker)), channel("atask:r:" + random_id()) {
    if (options.send_chunk == 0) throw OptionsError("distributed::Client - send_chunk must be at least 1");
  }

  void start();
  // Stops the I/O thread; the handles still waiting end with BrokerError.
  void shut_down();

  // Runs a coroutine on the I/O thread and waits for it.
  template <class R>
  R run(asio::awaitable<R> a) {
    if (io.get_executor().running_in_this_thread())
      throw LifecycleError("distributed::Client - a blocking call from the client's own I/O thread");
    return asio::co_spawn(io, std::move(a), asio::use_future).get();
  }

  // The command connection, connected (and the subscription in place)
  // within retry_for.
  asio::awaitable<std::shared_ptr<redis::Connection>> command_conn();
  // A command on the command connection; a lost connection is retried
  // within retry_for (the commands here are safe to repeat).
  asio::awaitable<Reply> call(redis::Connection::Command c);
  asio::awaitable<void> connect();
  // A message on this client's channel (lua/10_endings.lua, finish(), and
  // atask_progress): "o:<id>\n<state>\n<etype>\n<result>\n<emsg>" carries an
  // outcome, "p:<id>\n<fraction>\n<message>" a progress report, and a bare
  // "<id>" an outcome too large to carry (read from the task's hash).
  void on_published(const std::string& payload);
  std::vector<std::string> waiting_ids();
  // Reads the outcome of these tasks and completes the handles of those
  // that have ended.
  asio::awaitable<void> refresh(std::vector<std::string> ids);
  asio::awaitable<void> read_progress(std::string id);
  void settle(const std::string& id, const Reply& r);
  std::shared_ptr<RemoteState> take(const std::string& id);
  // Keeps the subscription alive while handles wait: a PING every 500 ms
  // finds a lost connection, and a reconnect re-reads what was missed.
  static asio::awaitable<void> watch(std::shared_ptr<ClientImpl> self);

  ClientOptions options;
  redis::Endpoint endpoint;
  const std::string channel;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  asio::steady_timer wake{io};
  std::thread thread;
  // I/O thread only:
  std::shared_ptr<redis::Connection> cmd_conn, sub_conn;
  bool stopping = false;
  // Handles waiting for an outcome, by task id.
  struct Waiting {
    std::weak_ptr<RemoteState> state;
    bool sent = false;    // Redis has the task (its send() returned)
    bool polled = false;  // not sent by this client: no message comes, the watch loop looks
  };
  std::mutex m;
  std::unordered_map<std::string, Waiting> waiting;
};

/// Sends the enqueue calls (atask_enqueue, atask_chain, atask_group), at
/// most ClientOptions::send_chunk per round trip. A connection lost on the way is
/// retried within retry_for with the same task ids: "exists already" then
/// means that the first try got through.
asio::awaitable<std::vector<redis::Reply>> enqueue(ClientImpl* c, std::vector<redis::Connection::Command> cs);

}  // namespace atask::distributed::detail
