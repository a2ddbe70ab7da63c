// The control plane's server state, shared by server.cpp (accepting,
// reading requests, writing replies) and server_streams.cpp (job progress
// streams and the dashboard's event stream). Everything in it is used on
// the supervisor's io_context thread unless it says otherwise.
#pragma once

#include "http/api.hpp"
#include "http/events.hpp"

#include <atask/http/server.hpp>
#include <atask/supervisor/supervisor.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>

namespace atask::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

inline constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

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

namespace detail {

/// The headers every reply carries.
template <class Body>
void common_headers(bhttp::response<Body>& res, std::string_view content_type) {
  res.set(bhttp::field::server, "atask");
  if (!content_type.empty()) res.set(bhttp::field::content_type, content_type);
  res.set(bhttp::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
}

}  // namespace detail

}  // namespace atask::http
