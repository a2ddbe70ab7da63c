// The control plane's I/O: accepting, reading requests with limits and
// deadlines, writing replies and job progress streams. Everything here runs
// on the supervisor's io_context thread; the routes are in api.cpp.
#include "http/api.hpp"
#include "http/events.hpp"

#include <atask/core/errors.hpp>
#include <atask/http/server.hpp>
#include <atask/jobs/jobs.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <tuple>
#include <utility>

namespace atask::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;
using namespace net::experimental::awaitable_operators;

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

struct Server::Impl : std::enable_shared_from_this<Impl> {
  Impl(Supervisor& s, ServerOptions o)
      : sv(s), opt(std::move(o)), jobs(std::make_shared<detail::JobsRef>()) {}

  Supervisor& sv;
  const ServerOptions opt;
  const std::shared_ptr<detail::JobsRef> jobs;
  std::unique_ptr<detail::Api> api;
  std::optional<tcp::acceptor> acceptor;  // the loop thread's once started
  std::atomic<unsigned short> port{0};
  std::string address_for_url;

  std::atomic<std::uint64_t> accepted{0}, refused{0}, requests{0}, client_errors{0}, timeouts{0};
  std::atomic<std::size_t> streams{0}, event_streams{0};
  std::array<std::atomic<std::uint64_t>, 5> by_class{};  // 1xx .. 5xx

  /// Counts one answered request.
  void answered(int status) {
    ++requests;
    if (status >= 400 && status < 500) ++client_errors;
    if (status >= 100 && status < 600) ++by_class[static_cast<std::size_t>(status / 100 - 1)];
  }
  ServerStats snapshot() const;

  // Build slots for replies made on the pool (OnPool::read): a channel
  // holding one token per slot, used on the loop thread only.
  static constexpr std::size_t build_slots = 2;
  std::optional<net::experimental::channel<void(error_code)>> slots;

  // Sessions: the set is the loop thread's; `open` is also read by stop().
  std::set<beast::tcp_stream*> sessions;
  bool stopping = false;  // loop thread
  mutable std::mutex m;
  std::condition_variable cv;
  std::size_t open = 0;  // under m

  // GET /api/events (loop thread only): while streams are open, one
  // coroutine (hub_loop) reads the dashboard's state every events_interval
  // for all of them, keeps it if something changed, and wakes each stream,
  // which sends the update from the state it sent last.
  struct Hub {
    std::shared_ptr<const detail::DashboardState> current, previous;
    std::shared_ptr<const std::string> update;  // previous -> current
    std::set<net::experimental::channel<void(error_code)>*> streams;
    bool running = false;                // hub_loop runs (or is spawned)
    net::steady_timer* timer = nullptr;  // hub_loop's, while it runs
  } hub;

  void start();
  void stop();
  net::awaitable<void> hub_loop();
  net::awaitable<std::shared_ptr<const detail::DashboardState>> read_state();
  net::awaitable<void> stream_events(beast::tcp_stream& stream, unsigned version, bool head);
  net::awaitable<void> accept_loop();
  net::awaitable<void> session(tcp::socket sock);
  net::awaitable<bool> write_reply(beast::tcp_stream& stream, const detail::Reply& r, unsigned version,
                                   bool keep_alive, bool head = false);
  net::awaitable<void> stream_job(beast::tcp_stream& stream, detail::StreamJob sj, unsigned version,
                                  bool head);
  net::awaitable<detail::Reply> run_on_pool(std::function<detail::Reply()> fn);
};

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

/// The headers every reply carries.
template <class Body>
void common_headers(bhttp::response<Body>& res, std::string_view content_type) {
  res.set(bhttp::field::server, "atask");
  if (!content_type.empty()) res.set(bhttp::field::content_type, content_type);
  res.set(bhttp::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
}

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

net::awaitable<void> Server::Impl::stream_job(beast::tcp_stream& stream, detail::StreamJob sj,
                                              unsigned version, bool head) {
  using detail::StreamFormat;
  ++streams;
  struct Count {
    std::atomic<std::size_t>& n;
    ~Count() { --n; }
  } count{streams};

  // The job wakes us through the channel (thread-safe try_send); one pending
  // wake-up is enough: we always read the job's latest state.
  net::experimental::concurrent_channel<void(error_code)> wake(stream.get_executor(), 1);
  Job::Subscription sub = sj.job.subscribe([&wake] { wake.try_send(error_code{}); });
  JobInfo info = sj.job.info();

  // An SSE client whose Last-Event-ID is the final event has it all: 204
  // tells an EventSource to stop reconnecting.
  if (sj.seen && *sj.seen == info.version && info.finished()) {
    answered(204);
    bhttp::response<bhttp::empty_body> res{bhttp::status::no_content, version};
    common_headers(res, {});
    res.keep_alive(false);
    stream.expires_after(opt.request_timeout);
    co_await bhttp::async_write(stream, res, use_tuple);
    co_return;
  }

  answered(200);
  bhttp::response<bhttp::empty_body> res{bhttp::status::ok, version};
  common_headers(res, sj.format == StreamFormat::sse      ? "text/event-stream"
                      : sj.format == StreamFormat::ndjson ? "application/x-ndjson"
                                                          : "application/json");
  if (sj.format == StreamFormat::sse) res.set("X-Accel-Buffering", "no");  // proxies: do not buffer
  res.keep_alive(false);
  res.chunked(true);
  bhttp::response_serializer<bhttp::empty_body> sr{res};
  stream.expires_after(opt.request_timeout);
  if (auto [ec, n] = co_await bhttp::async_write_header(stream, sr, use_tuple); ec || head) co_return;

  // One event per line (docs/http.md): the JSON array puts its '[' or ','
  // before each event and its ']' after the last, so the body is one array
  // and every line one event.
  bool first = true;
  auto frame = [&](const JobInfo& j) {
    const std::string ev = detail::Api::job_event(j);
    std::string out;
    switch (sj.format) {
      case StreamFormat::json_array:
        out = (first ? "[" : ",") + ev + (j.finished() ? "]\n" : "\n");
        break;
      case StreamFormat::ndjson:
        out = ev + "\n";
        break;
      case StreamFormat::sse:
        out = "id: " + detail::event_id(j) + "\ndata: " + ev + "\n\n";
        break;
    }
    first = false;
    return out;
  };
  auto send = [&](std::string text) -> net::awaitable<bool> {
    stream.expires_after(opt.request_timeout);
    auto [ec, n] = co_await net::async_write(stream, bhttp::make_chunk(net::buffer(text)), use_tuple);
    if (ec == beast::error::timeout) ++timeouts;
    co_return !ec;
  };

  // The first event is the job's current state, unless an SSE client that
  // resumes has seen exactly that state: then it waits for the next change.
  // Progress is coalesced, so what a resuming client missed arrives as the
  // latest state, like for any follower slower than the job.
  std::uint64_t seen = info.version;
  if (!(sj.seen && *sj.seen == info.version) && !co_await send(frame(info))) co_return;
  while (!info.finished()) {
    stream.expires_never();
    // A client that closes (or sends anything) while we wait ends the
    // stream; the job goes on.
    auto woke = co_await (wake.async_receive(use_tuple) ||
                          stream.socket().async_wait(tcp::socket::wait_read, use_tuple));
    if (woke.index() == 1 || stopping) co_return;
    info = sj.job.info();
    if (info.version == seen) continue;
    seen = info.version;
    if (!co_await send(frame(info))) co_return;
  }
  stream.expires_after(opt.request_timeout);
  co_await net::async_write(stream, bhttp::make_chunk_last(), use_tuple);
}

// Reads the dashboard's state on the pool, in one of the build slots like
// the other replies that take milliseconds with thousands of workers.
net::awaitable<std::shared_ptr<const detail::DashboardState>> Server::Impl::read_state() {
  co_await slots->async_receive(use_tuple);
  struct Give {
    Impl& s;
    ~Give() { s.slots->try_send(error_code{}); }
  } give{*this};
  auto state = std::make_shared<detail::DashboardState>(detail::dashboard_state(*api));
  co_await run_on_pool([&] {
    detail::read_dashboard(*state, sv, *jobs);
    return detail::Reply{};
  });
  co_return state;
}

net::awaitable<void> Server::Impl::hub_loop() {
  auto self = shared_from_this();
  net::steady_timer timer(co_await net::this_coro::executor);
  hub.timer = &timer;
  struct Clear {
    Hub& h;
    ~Clear() {
      h.running = false;
      h.timer = nullptr;
      h.current = h.previous = nullptr;
      h.update = nullptr;
    }
  } clear{hub};
  while (!stopping && !hub.streams.empty()) {
    timer.expires_after(opt.events_interval);
    co_await timer.async_wait(use_tuple);
    if (stopping || hub.streams.empty()) break;
    std::shared_ptr<const detail::DashboardState> now;
    try {
      now = co_await read_state();
    } catch (const std::exception& e) {
      sv.logger().warn("{}: http: the event streams' state could not be read: {}", sv.id(),
                       detail::message_of(e));
      continue;
    }
    std::optional<std::string> update;
    if (hub.current) {
      update = detail::update_event(*hub.current, *now);
      if (!update) continue;  // nothing changed: nothing to send
    }
    hub.previous = std::exchange(hub.current, now);
    hub.update = update ? std::make_shared<const std::string>(std::move(*update)) : nullptr;
    for (auto* wake : hub.streams) wake->try_send(error_code{});
  }
}

net::awaitable<void> Server::Impl::stream_events(beast::tcp_stream& stream, unsigned version, bool head) {
  ++event_streams;
  struct Count {
    std::atomic<std::size_t>& n;
    ~Count() { --n; }
  } count{event_streams};

  answered(200);
  bhttp::response<bhttp::empty_body> res{bhttp::status::ok, version};
  common_headers(res, "text/event-stream");
  res.set("X-Accel-Buffering", "no");  // proxies: do not buffer
  res.keep_alive(false);
  res.chunked(true);
  bhttp::response_serializer<bhttp::empty_body> sr{res};
  stream.expires_after(opt.request_timeout);
  if (auto [ec, n] = co_await bhttp::async_write_header(stream, sr, use_tuple); ec || head) co_return;

  auto last_write = std::chrono::steady_clock::now();
  auto send = [&](std::string_view text) -> net::awaitable<bool> {
    stream.expires_after(opt.request_timeout);
    auto [ec, n] = co_await net::async_write(stream, bhttp::make_chunk(net::buffer(text)), use_tuple);
    if (ec == beast::error::timeout) ++timeouts;
    last_write = std::chrono::steady_clock::now();
    co_return !ec;
  };

  // Join the hub before reading the snapshot, so that no state built in
  // between is missed; the first one the hub wakes us for is diffed
  // against the snapshot.
  net::experimental::channel<void(error_code)> wake(stream.get_executor(), 1);
  hub.streams.insert(&wake);
  struct Leave {
    Hub& h;
    net::experimental::channel<void(error_code)>* w;
    ~Leave() { h.streams.erase(w); }
  } leave{hub, &wake};
  if (!hub.running) {
    hub.running = true;
    net::co_spawn(
        stream.get_executor(), [self = shared_from_this()] { return self->hub_loop(); }, net::detached);
  }

  // The snapshot: the hub's state if it is recent, else one read now.
  std::shared_ptr<const detail::DashboardState> sent = hub.current;
  if (!sent || std::chrono::steady_clock::now() - sent->read_at >= opt.events_interval) {
    std::string failed;
    try {
      sent = co_await read_state();
    } catch (const std::exception& e) {
      failed = detail::message_of(e);
    }
    if (!failed.empty()) {
      co_await send("event: error\ndata: " + detail::error_reply(503, failed).body + "\n\n");
      co_return;
    }
  }
  if (stopping || !co_await send(detail::snapshot_event(*sent))) co_return;

  net::steady_timer keepalive(stream.get_executor());
  for (;;) {
    stream.expires_never();
    keepalive.expires_at(last_write + opt.events_keepalive);
    // A client that closes (or sends anything) ends the stream.
    auto woke = co_await (wake.async_receive(use_tuple) ||
                          stream.socket().async_wait(tcp::socket::wait_read, use_tuple) ||
                          keepalive.async_wait(use_tuple));
    if (woke.index() == 1 || stopping) co_return;
    if (woke.index() == 2) {
      if (!co_await send(detail::keepalive_comment)) co_return;
      continue;
    }
    const auto now = hub.current;
    if (!now || now->read_at <= sent->read_at) continue;  // not newer than what this stream has
    std::string text;
    if (sent == hub.previous && hub.update) {
      text = *hub.update;  // the common case: one update text for every stream
    } else if (auto u = detail::update_event(*sent, *now)) {
      text = std::move(*u);  // this stream's snapshot, or a state it missed, was another
    }
    sent = now;
    if (!text.empty() && !co_await send(text)) co_return;
  }
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
