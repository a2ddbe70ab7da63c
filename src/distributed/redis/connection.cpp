#include "distributed/redis/connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <hiredis/hiredis.h>

#include <array>
#include <charconv>
#include <limits>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace asio = boost::asio;
using boost::system::error_code;

namespace atask::redis {

// -- Reply ---------------------------------------------------------------------------------------

std::string Reply::describe() const {
  switch (type) {
    case Type::nil:
      return "nil";
    case Type::status:
      return str;
    case Type::error:
      return str;
    case Type::integer:
      return std::to_string(integer);
    case Type::string:
      return '"' + str + '"';
    case Type::array: {
      std::string s = "[";
      for (std::size_t i = 0; i < elements.size(); ++i) s += (i ? ", " : "") + elements[i].describe();
      return s + "]";
    }
  }
  return "?";
}

namespace {

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:  // REDIS_REPLY_NIL
      out.type = Reply::Type::nil;
      break;
  }
  return out;
}

// Appends one command in RESP (hiredis's encoder).
void format_into(std::string& out, const Connection::Command& cmd) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(cmd.size());
  lens.reserve(cmd.size());
  for (const auto& a : cmd) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* target = nullptr;
  const int n = redisFormatCommandArgv(&target, static_cast<int>(argv.size()), argv.data(), lens.data());
  if (n < 0 || !target) throw BrokerError("redis: could not encode a command (out of memory)");
  out.append(target, static_cast<std::size_t>(n));
  redisFreeCommand(target);
}

std::string percent_decode(std::string_view s, const char* what) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    unsigned v = 0;
    if (i + 2 >= s.size() + 0 ||
        std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr != s.data() + i + 3)
      throw OptionsError(std::string("redis URL: a bad %-escape in the ") + what);
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

}  // namespace

// -- Endpoint -------------------------------------------------------------------------------------

std::string Endpoint::to_string() const {
  std::string s = "redis://";
  if (!username.empty() || !password.empty()) s += username + (password.empty() ? "@" : ":***@");
  const bool v6 = host.find(':') != std::string::npos;
  s += v6 ? "[" + host + "]" : host;
  s += ":" + std::to_string(port);
  if (db != 0) s += "/" + std::to_string(db);
  return s;
}

Endpoint parse_url(std::string_view url) {
  auto bad = [&](const std::string& why) -> OptionsError {
    return OptionsError("redis URL: " + why + " (expected redis://[[user]:password@]host[:port][/db])");
  };
  constexpr std::string_view scheme = "redis://";
  if (url.substr(0, scheme.size()) != scheme) throw bad("it does not start with redis://");
  std::string_view rest = url.substr(scheme.size());
  Endpoint ep;
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (const auto colon = auth.find(':'); colon != std::string_view::npos) {
      ep.username = percent_decode(auth.substr(0, colon), "user name");
      ep.password = percent_decode(auth.substr(colon + 1), "password");
    } else {
      ep.username = percent_decode(auth, "user name");
    }
  }
  std::string_view hostport = rest;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      int v = -1;
      const auto r = std::from_chars(db.data(), db.data() + db.size(), v);
      if (r.ec != std::errc{} || r.ptr != db.data() + db.size() || v < 0)
        throw bad("the database '" + std::string(db) + "' is not a number >= 0");
      ep.db = v;
    }
  }
  std::string_view port;
  if (!hostport.empty() && hostport.front() == '[') {  // [::1]:6379
    const auto close = hostport.find(']');
    if (close == std::string_view::npos) throw bad("an IPv6 address without its ']'");
    ep.host = std::string(hostport.substr(1, close - 1));
    const std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw bad("junk after the IPv6 address");
      port = after.substr(1);
    }
  } else if (const auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    ep.host = std::string(hostport.substr(0, colon));
    port = hostport.substr(colon + 1);
  } else {
    ep.host = std::string(hostport);
  }
  if (ep.host.empty()) throw bad("no host");
  if (!port.empty()) {
    unsigned v = 0;
    const auto r = std::from_chars(port.data(), port.data() + port.size(), v);
    if (r.ec != std::errc{} || r.ptr != port.data() + port.size() || v == 0 || v > 65535)
      throw bad("the port '" + std::string(port) + "' is not 1-65535");
    ep.port = static_cast<unsigned short>(v);
  }
  return ep;
}

// -- Connection -----------------------------------------------------------------------------------

// Commands written together that wait for their replies; the caller's
// coroutine waits on `ready` (a timer that never expires, canceled when the
// last reply or an error is in).
struct Connection::Pending {
  explicit Pending(const asio::any_io_executor& ex, std::size_t n) : expected(n), ready(ex) {
    ready.expires_at(asio::steady_timer::time_point::max());
    replies.reserve(n);
  }
  std::size_t expected;
  std::vector<Reply> replies;
  std::string error;  // non-empty: the connection failed first
  bool done = false;
  asio::steady_timer ready;
};

Connection::Connection(asio::any_io_executor ex, Endpoint ep)
    : ex_(std::move(ex)), ep_(std::move(ep)), socket_(ex_), reader_(redisReaderCreate()) {
  if (!reader_) throw BrokerError("redis: could not create a reply reader (out of memory)");
}

Connection::~Connection() {
  fail_all("the connection object was destroyed");
  if (reader_) redisReaderFree(reader_);
}

asio::awaitable<std::shared_ptr<Connection>> Connection::connect(asio::any_io_executor ex, Endpoint ep,
                                                                 ConnectOptions o) {
  auto c = std::shared_ptr<Connection>(new Connection(ex, ep));
  const std::string where = ep.to_string();
  // One deadline for resolve, connect, AUTH and SELECT: it closes the
  // socket, which ends whatever waits.
  auto deadline = std::make_shared<asio::steady_timer>(ex, o.timeout);
  auto timed_out = std::make_shared<bool>(false);
  deadline->async_wait([weak = std::weak_ptr<Connection>(c), timed_out](error_code ec) {
    if (ec) return;
    *timed_out = true;
    if (auto self = weak.lock()) self->close();
  });
  // No throw inside a catch handler of a coroutine: GCC 12 then destroys
  // the coroutine's parameters twice. The error is kept and thrown below.
  std::string failure;
  try {
    asio::ip::tcp::resolver resolver(ex);
    auto results = co_await resolver.async_resolve(ep.host, std::to_string(ep.port), asio::use_awaitable);
    co_await asio::async_connect(c->socket_, results, asio::use_awaitable);
    c->socket_.set_option(asio::ip::tcp::no_delay(true));
    c->open_ = true;
    asio::co_spawn(ex, read_loop(c), asio::detached);
    std::vector<Command> hello;
    if (!ep.password.empty()) {
      if (ep.username.empty())
        hello.push_back(cmd("AUTH", ep.password));
      else
        hello.push_back(cmd("AUTH", ep.username, ep.password));
    }
    if (ep.db != 0) hello.push_back(cmd("SELECT", std::to_string(ep.db)));
    if (!o.client_name.empty()) hello.push_back(cmd("CLIENT", "SETNAME", o.client_name));
    if (!hello.empty()) {
      const auto replies = co_await c->pipeline(hello);
      for (std::size_t i = 0; i < replies.size() && failure.empty(); ++i)
        if (replies[i].is_error()) failure = hello[i][0] + " refused: " + replies[i].str;
    }
  } catch (const BrokerError& e) {
    failure = e.what();
  } catch (const boost::system::system_error& e) {
    failure = "cannot connect: " + e.code().message();
  }
  deadline->cancel();
  if (*timed_out) failure = "no connection within " + std::to_string(o.timeout.count()) + " ms";
  if (!failure.empty()) {
    c->close();
    if (failure.rfind("redis ", 0) == 0) throw BrokerError(failure);
    throw BrokerError("redis " + where + ": " + failure);
  }
  // The caller's pointer: same object, its own count (see read_loop()).
  // The last user reference may go on any thread: the close runs on the
  // connection's executor (inline when already there). If that executor
  // never runs again, its queue is destroyed with it, and the connection
  // with the queue.
  struct Guard {
    std::shared_ptr<Connection> c;
    ~Guard() {
      if (!c) return;
      auto ex = c->ex_;
      asio::dispatch(ex, [c = std::move(c)] { c->close(); });
    }
  };
  auto guard = std::make_shared<Guard>();
  guard->c = c;
  co_return std::shared_ptr<Connection>(guard, c.get());
}

std::size_t Connection::in_flight() const noexcept {
  std::size_t n = 0;
  for (const auto& p : pending_) n += p->expected - p->replies.size();
  return n;
}

asio::awaitable<std::vector<Reply>> Connection::pipeline(std::vector<Command> commands) {
  if (!open_)
    throw BrokerError("redis " + ep_.to_string() + ": the connection is closed" +
                      (closed_why_.empty() ? "" : " (" + closed_why_ + ")"));
  if (commands.empty()) co_return std::vector<Reply>{};
  auto p = std::make_shared<Pending>(ex_, commands.size());
  for (const auto& c : commands) format_into(out_, c);
  pending_.push_back(p);
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(ex_, write_loop(shared_from_this()), asio::detached);
  }
  error_code ec;
  co_await p->ready.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (!p->done) {
    // Our wait was canceled from outside (the caller's coroutine is being
    // torn down): the replies will still come, and be dropped.
    throw BrokerError("redis " + ep_.to_string() + ": the wait for a reply was canceled");
  }
  if (!p->error.empty()) throw BrokerError("redis " + ep_.to_string() + ": " + p->error);
  co_return std::move(p->replies);
}

asio::awaitable<Reply> Connection::command(Command command) {
  std::vector<Command> one;
  one.push_back(std::move(command));
  auto r = co_await pipeline(std::move(one));
  co_return std::move(r.front());
}

asio::awaitable<Reply> Connection::call(Command command) {
  const std::string name = command.empty() ? std::string() : command.front();
  Reply r = co_await this->command(std::move(command));
  if (r.is_error()) throw BrokerError("redis " + name + ": " + r.str);
  co_return r;
}

asio::awaitable<void> Connection::write_loop(std::shared_ptr<Connection> self) {
  while (self->open_ && !self->out_.empty()) {
    self->sending_.clear();
    self->sending_.swap(self->out_);
    error_code ec;
    co_await asio::async_write(self->socket_, asio::buffer(self->sending_),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      self->fail_all("write failed: " + ec.message());
      break;
    }
  }
  self->writing_ = false;
}

asio::awaitable<void> Connection::read_loop(std::shared_ptr<Connection> self) {
  std::array<char, 16 * 1024> buf;
  for (;;) {
    error_code ec;
    const std::size_t n = co_await self->socket_.async_read_some(
        asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      self->fail_all(ec == asio::error::eof ? "the server closed the connection"
                                            : "read failed: " + ec.message());
      co_return;
    }
    if (redisReaderFeed(self->reader_, buf.data(), n) != REDIS_OK) {
      self->fail_all("a reply could not be parsed");
      co_return;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(self->reader_, &raw) != REDIS_OK) {
        self->fail_all(std::string("a reply could not be parsed: ") + self->reader_->errstr);
        co_return;
      }
      if (!raw) break;
      auto* r = static_cast<redisReply*>(raw);
      Reply reply = convert(r);
      freeReplyObject(r);
      self->deliver(std::move(reply));
    }
  }
}

void Connection::deliver(Reply r) {
  if (on_message_ && r.type == Reply::Type::array && r.elements.size() == 3 &&
      r.elements[0].str == "message") {  // a published message, not a reply
    on_message_(r.elements[1].str, r.elements[2].str);
    return;
  }
  if (pending_.empty()) {  // a reply nobody asked for: the stream is out of step
    fail_all("a reply came that no command asked for");
    return;
  }
  auto& p = pending_.front();
  p->replies.push_back(std::move(r));
  if (p->replies.size() == p->expected) {
    p->done = true;
    p->ready.cancel();
    pending_.pop_front();
  }
}

void Connection::fail_all(const std::string& why) noexcept {
  if (open_) closed_why_ = why;
  open_ = false;
  error_code ec;
  socket_.close(ec);
  auto all = std::move(pending_);
  pending_.clear();
  for (auto& p : all) {
    p->error = why;
    p->done = true;
    p->ready.cancel();
  }
}

void Connection::close() noexcept {
  fail_all("closed");
}

}  // namespace atask::redis
