#pragma once
// A connection to Redis on Boost.Asio: C++20 coroutines, commands pipelined
// (every command issued while a write is in flight goes out in the next
// write), replies matched to commands in order. hiredis is used for what
// it is good at - the RESP reply parser and the command encoder - and not
// for I/O (DISTRIBUTED.md 4.3, option B): timeouts, cancellation and
// reconnects stay in Asio.
//
// A blocking command (XREADGROUP BLOCK, BLPOP) holds the connection until it
// returns: give it a connection of its own.

#include <atask/core/errors.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct redisReader;

namespace atask::redis {

/// One reply. Error replies are values here; Connection::call() turns them
/// into BrokerError.
struct Reply {
  enum class Type : unsigned char { nil, status, error, integer, string, array };
  Type type = Type::nil;
  std::string str;  ///< status, error and string replies
  long long integer = 0;
  std::vector<Reply> elements;  ///< array replies

  bool is_nil() const noexcept { return type == Type::nil; }
  bool is_error() const noexcept { return type == Type::error; }
  /// "OK", 42, "text", [..], nil, ERR ...: for messages and tests.
  std::string describe() const;
};

/// Where Redis is, and who we are to it.
struct Endpoint {
  std::string host = "127.0.0.1";
  unsigned short port = 6379;
  std::string username{};  ///< ACL user (Redis 6+); empty: AUTH with the password only
  std::string password{};  ///< never logged
  int db = 0;
  /// "redis://[[user]:password@]host[:port][/db]" without the password.
  std::string to_string() const;
};

/// Parses redis://[[user]:password@]host[:port][/db] (percent-escapes in
/// user and password allowed).
/// @throws OptionsError naming what is wrong (never echoing the password).
Endpoint parse_url(std::string_view url);

struct ConnectOptions {
  /// TCP connect, AUTH and SELECT together.
  std::chrono::milliseconds timeout{5'000};
  /// The name CLIENT LIST shows (CLIENT SETNAME); empty: none.
  std::string client_name{};
};

/// A command from its words: cmd("SET", key, value). (A braced list of
/// string literals inside a co_await trips GCC 12, "array used as
/// initializer".)
template <class... S>
std::vector<std::string> cmd(S&&... words) {
  std::vector<std::string> c;
  c.reserve(sizeof...(S));
  (c.emplace_back(std::forward<S>(words)), ...);
  return c;
}

/// One TCP connection to Redis. Closed when the last shared_ptr to it goes.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Unsafe: call it on its executor
/// (the one given to connect()), from any number of coroutines there.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Command = std::vector<std::string>;

  /// Connects, authenticates and selects the database.
  /// @throws BrokerError when Redis is unreachable or refuses us (the
  ///         message names the endpoint, without the password), or on
  ///         timeout.
  static boost::asio::awaitable<std::shared_ptr<Connection>> connect(boost::asio::any_io_executor ex,
                                                                     Endpoint ep, ConnectOptions o);
  /// connect() with the default options. (Not a default argument: GCC 12
  /// destroys a coroutine's defaulted class-type argument twice.)
  static boost::asio::awaitable<std::shared_ptr<Connection>> connect(boost::asio::any_io_executor ex,
                                                                     Endpoint ep) {
    return connect(std::move(ex), std::move(ep), ConnectOptions{});
  }

  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Sends the commands in one write and returns their replies, in order.
  /// Error replies are returned as such.
  /// @throws BrokerError when the connection is closed or lost first.
  boost::asio::awaitable<std::vector<Reply>> pipeline(std::vector<Command> commands);
  /// One command; its reply may be an error reply.
  boost::asio::awaitable<Reply> command(Command command);
  /// One command; an error reply throws.
  /// @throws BrokerError for an error reply ("XADD: ERR ...") or a lost
  ///         connection.
  boost::asio::awaitable<Reply> call(Command command);

  /// For a subscriber connection (SUBSCRIBE): `f(channel, payload)` gets
  /// every published message, on the connection's executor. The replies to
  /// SUBSCRIBE and PING still go to their commands.
  void on_message(std::function<void(const std::string& channel, const std::string& payload)> f) {
    on_message_ = std::move(f);
  }

  /// Closes the socket: commands waiting for replies fail with BrokerError.
  void close() noexcept;
  bool is_open() const noexcept { return open_; }
  const Endpoint& endpoint() const noexcept { return ep_; }
  /// Commands sent and not yet answered.
  std::size_t in_flight() const noexcept;

 private:
  struct Pending;
  Connection(boost::asio::any_io_executor ex, Endpoint ep);
  // The loops hold the connection. What connect() returns shares the
  // connection but not its count: when the last of those goes, a guard
  // closes the connection, the loops end and let it go.
  static boost::asio::awaitable<void> read_loop(std::shared_ptr<Connection> self);
  static boost::asio::awaitable<void> write_loop(std::shared_ptr<Connection> self);
  void fail_all(const std::string& why) noexcept;
  void deliver(Reply r);

  boost::asio::any_io_executor ex_;
  Endpoint ep_;
  boost::asio::ip::tcp::socket socket_;
  redisReader* reader_ = nullptr;
  bool open_ = false;
  bool writing_ = false;
  std::string out_;                               // formatted commands waiting for the next write
  std::string sending_;                           // the write in flight
  std::deque<std::shared_ptr<Pending>> pending_;  // in the order their commands were written
  std::string closed_why_;
  std::function<void(const std::string&, const std::string&)> on_message_;
};

}  // namespace atask::redis
