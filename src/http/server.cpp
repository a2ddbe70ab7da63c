// The control plane's I/O: accepting, reading requests with limits and
// deadlines, writing replies, and the server's public calls. Everything
// here runs on the supervisor's io_context thread; the routes are in
// api.cpp, the streams in server_streams.cpp.
#include "http/server_impl.hpp"

#include <atask/core/errors.hpp>
#include <atask/jobs/jobs.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <spdlog/spdlog.h>

#include <future>
#include <tuple>
#include <utility>

namespace atask::http {

using detail::common_headers;

namespace {

/// Keeps a session in Impl::sessions (and the open count) for its lifetime.
struct SessionEntry {
  std::shared_ptr<Server::Impl> self;
  beast::tcp_stream* stream;
  SessionEntry(std::shared_ptr<Server::Impl> s, beast::tcp_stream* st) : self(std::move(s)), stream(st) {
    self->sessions.insert(stream);
  }
  ~SessionEntry() {
    self->sessions.erase(stream);
    std::lock_guard lk(self->m);
    if (--self->open == 0) self->cv.notify_all();
  }
  SessionEntry(const SessionEntry&) = delete;
  SessionEntry& operator=(const SessionEntry&) = delete;
};

/// Why Beast refused a request, in words (its own messages are terse
/// library terms: "bad method", "bad obs-fold").
std::string malformed(const error_code& ec) {
  using E = bhttp::error;
  std::string why;
  if (ec == E::bad_method)
    why = "the method is not a valid token";
  else if (ec == E::bad_target)
    why = "the request target contains a character that is not allowed";
  else if (ec == E::bad_version)
    why = "the HTTP version is not HTTP/1.x";
  else if (ec == E::bad_line_ending)
    why = "a line does not end with CRLF";
  else if (ec == E::bad_field)
    why = "a header field name is not a valid token";
  else if (ec == E::bad_value)
    why = "a header field value contains a character that is not allowed";
  else if (ec == E::bad_content_length)
    why = "the Content-Length header is not a number in range";
  else if (ec == E::multiple_content_length)
    why = "Content-Length is given more than once";
  else if (ec == E::bad_transfer_encoding)
    why = "the Transfer-Encoding header is not supported";
  else if (ec == E::bad_chunk || ec == E::bad_chunk_extension)
    why = "a chunk of the chunked body is malformed";
  else if (ec == E::bad_obs_fold)
    why = "a header uses obsolete line folding";
  else
    why = "it is not HTTP/1.1";
  return "malformed request: " + why;
}

/// A read's deadline, shared with its timer's handler: that handler may run
/// after the read completed (both were ready in the same turn of the loop),
/// when `armed` is already false and the socket is no longer touched.
struct ReadDeadline {
  tcp::socket* socket;
  bool armed = true;
  bool fired = false;
};

}  // namespace

void Server::Impl::start() {
  boost::system::error_code ec;
  const auto addr = net::ip::make_address(opt.address, ec);
  const tcp::endpoint ep(addr, opt.port);
  acceptor.emplace(sv.io_context());
  auto fail = [&](const char* what) {
    throw Error("http: cannot " + std::string(what) + " " + opt.address + ":" + std::to_string(opt.port) +
                " - " + ec.message());
  };
  if (acceptor->open(ep.protocol(), ec)) fail("open a socket for");
  acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (acceptor->bind(ep, ec)) fail("bind");
  if (acceptor->listen(net::socket_base::max_listen_connections, ec)) fail("listen on");
  port = acceptor->local_endpoint().port();
  address_for_url = addr.is_v6() ? "[" + opt.address + "]" : opt.address;
  api = std::make_unique<detail::Api>(sv, opt, jobs, std::chrono::steady_clock::now(),
                                      [this] { return snapshot(); });
  slots.emplace(acceptor->get_executor(), build_slots);
  for (std::size_t i = 0; i < build_slots; ++i) slots->try_send(error_code{});
  sv.logger().info("{}: http: serving on http://{}:{}/", sv.id(), address_for_url, port.load());
  net::co_spawn(
      acceptor->get_executor(), [self = shared_from_this()] { return self->accept_loop(); }, net::detached);
}

void Server::Impl::stop() {
  std::promise<void> closed;
  net::post(sv.io_context(), [&] {
    stopping = true;
    error_code ec;
    if (acceptor) acceptor->close(ec);
    if (hub.timer) hub.timer->cancel();
    for (auto* s : sessions) {
      s->socket().shutdown(tcp::socket::shutdown_both, ec);
      s->socket().close(ec);
    }
    closed.set_value();
  });
  closed.get_future().wait();
  std::unique_lock lk(m);
  if (!cv.wait_for(lk, std::chrono::seconds(10), [&] { return open == 0; }))
    sv.logger().warn("{}: http: {} connection(s) still open after 10 s", sv.id(), open);
  sv.logger().info("{}: http: stopped", sv.id());
}

net::awaitable<void> Server::Impl::accept_loop() {
  auto self = shared_from_this();
  net::steady_timer backoff(acceptor->get_executor());
  for (;;) {
    auto [ec, sock] = co_await acceptor->async_accept(use_tuple);
    if (stopping || ec == net::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors or a transient error: do not spin on it.
      sv.logger().warn("{}: http: accept failed: {}", sv.id(), ec.message());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    {
      std::lock_guard lk(m);
      if (open >= opt.max_connections) {
        ++refused;
        sock.close(ec);
        continue;
      }
      ++open;
    }
    ++accepted;
    net::co_spawn(acceptor->get_executor(), session(std::move(sock)), net::detached);
  }
}

net::awaitable<bool> Server::Impl::write_reply(beast::tcp_stream& stream, const detail::Reply& r,
                                               unsigned version, bool keep_alive, bool head) {
  auto fill = [&](auto& res) {
    common_headers(res, r.content_type);
    if (!r.allow.empty()) res.set(bhttp::field::allow, r.allow);
    if (r.status == 401) res.set(bhttp::field::www_authenticate, "Bearer");
    if (!r.content_disposition.empty()) res.set(bhttp::field::content_disposition, r.content_disposition);
    res.keep_alive(keep_alive);
  };
  answered(r.status);
  stream.expires_after(opt.request_timeout);
  error_code ec;
  if (head) {
    // The headers GET would send, Content-Length included; no body.
    bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(r.status), version};
    fill(res);
    res.content_length(r.head_length ? *r.head_length : r.body.size());
    std::tie(ec, std::ignore) = co_await bhttp::async_write(stream, res, use_tuple);
  } else {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
    fill(res);
    res.body() = r.body;
    res.prepare_payload();
    std::tie(ec, std::ignore) = co_await bhttp::async_write(stream, res, use_tuple);
  }
  if (ec == beast::error::timeout) ++timeouts;
  co_return !ec;
}

net::awaitable<void> Server::Impl::session(tcp::socket sock) {
  auto self = shared_from_this();
  beast::tcp_stream stream(std::move(sock));
  SessionEntry entry(self, &stream);
  if (stopping) co_return;
  beast::flat_buffer buf;
  net::steady_timer read_timer(stream.get_executor());
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(opt.max_header_size));
    parser.body_limit(opt.max_body_size);
    // The read's deadline is a timer of ours that cancels the read, not the
    // stream's expiry: Beast closes the socket when that one hits, and a
    // client that sent part of a request is owed a 408 first.
    stream.expires_never();
    auto deadline = std::make_shared<ReadDeadline>(ReadDeadline{&stream.socket()});
    read_timer.expires_after(opt.request_timeout);
    read_timer.async_wait([deadline](error_code e) {
      if (e || !deadline->armed) return;
      deadline->fired = true;
      error_code ignored;
      deadline->socket->cancel(ignored);
    });
    auto [ec, n] = co_await bhttp::async_read(stream, buf, parser, use_tuple);
    deadline->armed = false;
    read_timer.cancel();
    if (ec) {
      if (deadline->fired && !stopping) {
        ++timeouts;
        // An idle keep-alive connection is just closed; one that sent part
        // of a request (headers not finished, body short of its
        // Content-Length) is told why.
        if (parser.got_some() || buf.size() > 0)
          co_await write_reply(
              stream,
              detail::error_reply(408, "the request was not complete within request_timeout (" +
                                           std::to_string(opt.request_timeout.count()) + " ms)"),
              11, false);
        break;
      }
      // The client went away (between requests or in the middle of one):
      // nobody to answer.
      if (stopping || ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
          ec == net::error::eof || ec == net::error::connection_reset ||
          ec == net::error::operation_aborted || ec == net::error::broken_pipe)
        break;
      int status = 400;
      std::string msg = malformed(ec);
      if (ec == bhttp::error::header_limit) {
        status = 431;
        msg = "request line and headers exceed " + std::to_string(opt.max_header_size) + " bytes";
      } else if (ec == bhttp::error::body_limit) {
        status = 413;
        msg = "request body exceeds " + std::to_string(opt.max_body_size) + " bytes";
      }
      co_await write_reply(stream, detail::error_reply(status, msg), 11, false);
      break;
    }

    auto& req = parser.get();
    if (req.version() != 10 && req.version() != 11) {
      co_await write_reply(stream, detail::error_reply(400, "only HTTP/1.0 and HTTP/1.1 are served"), 11,
                           false);
      break;
    }
    detail::Request r;
    r.method = req.method_string();
    r.target = req.target();
    r.body = req.body();
    r.accept = req[bhttp::field::accept];
    r.last_event_id = req["Last-Event-ID"];
    const bool head = req.method() == bhttp::verb::head;
    if (!opt.token.empty())
      r.authorized = detail::bearer_matches(req[bhttp::field::authorization], opt.token);
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();

    detail::Outcome out = api->handle(r);
    if (auto* sj = std::get_if<detail::StreamJob>(&out)) {
      co_await stream_job(stream, std::move(*sj), version, head);
      break;
    }
    if (std::holds_alternative<detail::EventStream>(out)) {
      if (event_streams.load() < opt.max_event_streams) {
        co_await stream_events(stream, version, head);
        break;
      }
      out = detail::error_reply(
          503,
          "too many event streams are open (max_event_streams = " + std::to_string(opt.max_event_streams) +
              "): poll /api/supervisor, /api/workers, /api/tasks and /api/jobs instead");
    }
    detail::Reply reply;
    if (auto* p = std::get_if<detail::OnPool>(&out)) {
      try {
        if (p->read) {
          // Wait for a build slot (in turn, on the loop), give it back after.
          co_await slots->async_receive(use_tuple);
          struct Give {
            Impl& s;
            ~Give() { s.slots->try_send(error_code{}); }
          } give{*this};
          reply = co_await run_on_pool(std::move(p->run));
        } else {
          reply = co_await run_on_pool(std::move(p->run));
        }
      } catch (const std::exception& e) {
        reply = detail::error_reply(503, "the request could not run: " + detail::message_of(e));
      }
    } else {
      reply = std::move(std::get<detail::Reply>(out));
    }
    if (!co_await write_reply(stream, reply, version, keep_alive && !stopping, head) || !keep_alive ||
        stopping)
      break;
  }
  error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

// Runs fn on a pool thread at critical priority (it never waits behind the
// service's work) and resumes the session on the loop with its reply. A
// post, not a task: the control plane's own work stays out of tasks() and
// the task metrics.
net::awaitable<detail::Reply> Server::Impl::run_on_pool(std::function<detail::Reply()> fn) {
  auto ex = co_await net::this_coro::executor;
  auto [e, reply] =
      co_await net::async_initiate<decltype(use_tuple), void(std::exception_ptr, detail::Reply)>(
          [this, ex](auto handler, std::function<detail::Reply()> f) {
            sv.post(Priority::critical, [f = std::move(f), handler = std::move(handler),
                                         work = net::make_work_guard(ex)]() mutable {
              detail::Reply r;
              std::exception_ptr err;
              try {
                r = f();
              } catch (...) {
                err = std::current_exception();
              }
              net::post(work.get_executor(), [handler = std::move(handler), err, r = std::move(r)]() mutable {
                std::move(handler)(err, std::move(r));
              });
            });
          },
          use_tuple, std::move(fn));
  if (e) std::rethrow_exception(e);
  co_return reply;
}

// -- public ---------------------------------------------------------------------------

unsigned short Server::port() const noexcept {
  return impl_->port.load();
}
const ServerOptions& Server::options() const noexcept {
  return impl_->opt;
}
std::string Server::url() const {
  return "http://" + (impl_->address_for_url.empty() ? impl_->opt.address : impl_->address_for_url) + ":" +
         std::to_string(port());
}
ServerStats Server::Impl::snapshot() const {
  ServerStats s;
  s.connections_accepted = accepted.load();
  s.connections_refused = refused.load();
  {
    std::lock_guard lk(m);
    s.connections_open = open;
  }
  s.requests = requests.load();
  for (std::size_t c = 0; c < by_class.size(); ++c) s.requests_by_class[c] = by_class[c].load();
  s.client_errors = client_errors.load();
  s.timeouts = timeouts.load();
  s.streams_open = streams.load();
  s.event_streams_open = event_streams.load();
  return s;
}

ServerStats Server::stats() const {
  return impl_->snapshot();
}

Server serve(Supervisor& sv, ServerOptions o) {
  auto bad = [](const std::string& why) { throw OptionsError("atask::http::serve() - " + why); };
  boost::system::error_code ec;
  net::ip::make_address(o.address, ec);
  if (ec) bad("'" + o.address + "' is not an IPv4 or IPv6 address");
  if (!detail::is_loopback(o.address) && o.token.empty())
    bad("binding " + o.address + " (not loopback) needs a token: set ServerOptions::token");
  if (o.token.find_first_of(" \t\r\n") != std::string::npos) bad("the token must not contain whitespace");
  if (o.max_body_size == 0) bad("max_body_size must be > 0");
  if (o.max_header_size < 1024 || o.max_header_size > (1u << 30))
    bad("max_header_size must be 1 KiB to 1 GiB");
  if (o.request_timeout.count() <= 0) bad("request_timeout must be > 0");
  if (o.max_connections == 0) bad("max_connections must be > 0");
  if (o.metrics_cache.count() < 0) bad("metrics_cache must be >= 0 (0 = no cache)");
  if (o.events_interval.count() <= 0) bad("events_interval must be > 0");
  if (o.events_keepalive.count() <= 0) bad("events_keepalive must be > 0");
  auto impl = std::make_shared<Server::Impl>(sv, std::move(o));
  if (impl->opt.jobs) {
    impl->jobs->p = impl->opt.jobs;
    impl->jobs->configured = true;
    // A Jobs destroyed before the server stops (declared after the
    // supervisor, as its constructor requires, and no explicit stop()) must
    // not leave the server with a dangling pointer.
    impl->opt.jobs->when_destroyed([ref = impl->jobs] {
      std::lock_guard lk(ref->m);
      ref->p = nullptr;
    });
  }
  sv.add_step({.name = "http",
               .depends_on = {"workers"},
               .start = [impl](Supervisor&) { impl->start(); },
               .stop = [impl](Supervisor&) { impl->stop(); }});
  return Server(impl);
}

}  // namespace atask::http
