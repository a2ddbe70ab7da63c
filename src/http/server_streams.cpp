// The control plane's streams: a job's progress (NDJSON or Server-Sent
// Events, GET /api/jobs/{type}/{id}/events) and the dashboard's pushed
// updates (GET /api/events, one hub reading the state for all of them).
#include "http/server_impl.hpp"

#include <atask/jobs/jobs.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/this_coro.hpp>
#include <spdlog/spdlog.h>

#include <utility>

namespace atask::http {

using namespace net::experimental::awaitable_operators;
using detail::common_headers;

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

}  // namespace atask::http
