// What the control plane reads from a request and how it answers (see
// request.hpp).
#include "http/request.hpp"
#include "util/json_text.hpp"

#include <atask/core/errors.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/json/parse.hpp>
#include <boost/system/system_error.hpp>

#include <charconv>

namespace atask::http::detail {

namespace json = boost::json;

namespace {

char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
    out.push_back(c);
  }
  return out;
}

Reply json_reply(const json::value& v, int status) {
  return Reply{.status = status, .body = atask::detail::json_text(v)};
}

std::optional<std::string_view> query_param(std::string_view q, std::string_view key) {
  while (!q.empty()) {
    const auto amp = q.find('&');
    std::string_view kv = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    const auto eq = kv.find('=');
    if (kv.substr(0, eq) == key) return eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1);
  }
  return std::nullopt;
}

std::optional<std::size_t> limit_param(std::string_view query) {
  auto l = query_param(query, "limit");
  if (!l) return 100;
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(l->data(), l->data() + l->size(), n);
  if (ec != std::errc() || p != l->data() + l->size() || n == 0 || n > 1000) return std::nullopt;
  return n;
}

json::value parse_body(std::string_view body, json::value empty) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return empty;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec)
    throw ConversionError("the body is not valid JSON: " + ec.message());  // message(): no source location
  return v;
}

std::string message_of(const std::exception& e) {
  if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e)) return se->code().message();
  return e.what();
}

StreamFormat stream_format(std::string_view accept) {
  bool ndjson = false;
  while (!accept.empty()) {
    const auto comma = accept.find(',');
    std::string_view range = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view{} : accept.substr(comma + 1);
    const auto semi = range.find(';');
    const std::string_view type = trim(range.substr(0, semi));
    // A media range with q=0 is one the client refuses.
    bool refused = false;
    for (std::string_view params = semi == std::string_view::npos ? std::string_view{} : range.substr(semi);
         !params.empty();) {
      params.remove_prefix(1);
      const auto next = params.find(';');
      const std::string_view p = trim(params.substr(0, next));
      params = next == std::string_view::npos ? std::string_view{} : params.substr(next);
      if (p.size() >= 2 && lower(p[0]) == 'q' && p[1] == '=') {
        const std::string_view q = p.substr(2);
        refused = q.find_first_not_of("0.") == std::string_view::npos;
      }
    }
    if (refused) continue;
    if (iequals(type, "text/event-stream")) return StreamFormat::sse;
    if (iequals(type, "application/x-ndjson")) ndjson = true;
  }
  return ndjson ? StreamFormat::ndjson : StreamFormat::json_array;
}

Reply error_reply(int status, std::string_view message, std::string allow) {
  json::object o;
  o["error"] = message;
  o["status"] = status;
  Reply r = json_reply(o, status);
  r.allow = std::move(allow);
  return r;
}

bool is_loopback(std::string_view address) {
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(std::string(address), ec);
  return !ec && a.is_loopback();
}

bool bearer_matches(std::string_view header, std::string_view token) noexcept {
  // credentials = auth-scheme 1*SP token68 (RFC 7235 2.1); schemes are
  // case-insensitive. Only the token is secret: the scheme is compared
  // plainly, the token in constant time.
  constexpr std::string_view scheme = "bearer";
  if (header.size() <= scheme.size() || header[scheme.size()] != ' ' ||
      !iequals(header.substr(0, scheme.size()), scheme))
    return false;
  std::string_view given = header.substr(scheme.size());
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  return token_equals(given, token);
}

bool token_equals(std::string_view given, std::string_view token) noexcept {
  if (given.size() != token.size()) return false;
  unsigned diff = 0;
  for (std::size_t i = 0; i < token.size(); ++i) diff |= static_cast<unsigned>(given[i] ^ token[i]);
  return diff == 0;
}

std::optional<std::vector<std::string>> split_path(std::string_view target, std::string_view& query) {
  if (target.empty() || target.front() != '/') return std::nullopt;
  const auto q = target.find('?');
  std::string_view path = target.substr(0, q);
  query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  std::vector<std::string> seg;
  path.remove_prefix(1);
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);  // one trailing slash is fine
  if (path.empty()) return seg;
  for (;;) {
    const auto slash = path.find('/');
    auto part = percent_decode(path.substr(0, slash));
    // "//", "." and ".." (also %-escaped) name nothing here: refuse them
    // rather than guess what a client meant.
    if (!part || part->empty() || *part == "." || *part == "..") return std::nullopt;
    seg.push_back(std::move(*part));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return seg;
}

}  // namespace atask::http::detail
