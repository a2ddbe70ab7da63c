#pragma once
// A small blocking HTTP/1.1 client for the control-plane tests (Beast, on a
// private io_context). Every socket gets receive/send timeouts so that a
// server that never answers fails the test instead of hanging it.

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace test {

namespace http_t = boost::beast::http;

struct HttpResult {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string allow;
  std::string www_authenticate;
  std::string content_length;  ///< the header as sent ("" when absent)
  std::string content_disposition;
  bool chunked = false;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

class HttpConnection {
 public:
  explicit HttpConnection(unsigned short port, std::chrono::seconds timeout = std::chrono::seconds(20))
      : sock_(io_) {
    sock_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    timeval tv{};
    tv.tv_sec = timeout.count();
    ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  boost::asio::ip::tcp::socket& socket() { return sock_; }

  void send(const std::string& method, const std::string& target, const std::string& body = {},
            const Headers& headers = {}) {
    http_t::request<http_t::string_body> req{http_t::string_to_verb(method), target, 11};
    if (req.method() == http_t::verb::unknown) req.method_string(method);
    req.set(http_t::field::host, "127.0.0.1");
    for (auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    if (!body.empty() || method == "POST") req.prepare_payload();
    http_t::write(sock_, req);
  }

  /// Reads one whole response.
  HttpResult read() {
    http_t::response_parser<http_t::string_body> p;
    p.body_limit(64 << 20);
    http_t::read(sock_, buf_, p);
    return to_result(p.get());
  }

  HttpResult request(const std::string& method, const std::string& target, const std::string& body = {},
                     const Headers& headers = {}) {
    send(method, target, body, headers);
    return read();
  }

  /// A HEAD request: the response has headers only, whatever its
  /// Content-Length says (the parser is told so).
  HttpResult head(const std::string& target, const Headers& headers = {}) {
    send("HEAD", target, {}, headers);
    http_t::response_parser<http_t::string_body> p;
    p.skip(true);
    http_t::read_header(sock_, buf_, p);
    return to_result(p.get());
  }

  /// Streaming: reads the header, then body pieces as they come.
  std::string stream_header(http_t::field f) const { return std::string(parser_->get()[f]); }
  void read_header() {
    parser_.emplace();
    parser_->body_limit(64 << 20);
    http_t::read_header(sock_, buf_, *parser_);
  }
  int stream_status() const { return parser_->get().result_int(); }
  bool stream_chunked() const { return parser_->chunked(); }
  /// Reads until `pred(body so far)` holds or the body is complete; returns the body.
  template <class Pred>
  std::string read_body_until(Pred pred) {
    while (!parser_->is_done() && !pred(parser_->get().body())) {
      boost::system::error_code ec;
      http_t::read_some(sock_, buf_, *parser_, ec);
      if (ec == http_t::error::need_buffer) continue;
      if (ec) throw boost::system::system_error(ec);
    }
    return parser_->get().body();
  }
  bool stream_done() const { return parser_->is_done(); }

  void close() {
    boost::system::error_code ec;
    sock_.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }

 private:
  static HttpResult to_result(const http_t::response<http_t::string_body>& r) {
    HttpResult out;
    out.status = r.result_int();
    out.body = r.body();
    out.content_type = std::string(r[http_t::field::content_type]);
    out.allow = std::string(r[http_t::field::allow]);
    out.www_authenticate = std::string(r[http_t::field::www_authenticate]);
    out.content_length = std::string(r[http_t::field::content_length]);
    out.content_disposition = std::string(r[http_t::field::content_disposition]);
    out.chunked = r.chunked();
    return out;
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket sock_;
  boost::beast::flat_buffer buf_;
  std::optional<http_t::response_parser<http_t::string_body>> parser_;
};

inline HttpResult http_request(unsigned short port, const std::string& method, const std::string& target,
                               const std::string& body = {}, const Headers& headers = {}) {
  HttpConnection c(port);
  return c.request(method, target, body, headers);
}

}  // namespace test
