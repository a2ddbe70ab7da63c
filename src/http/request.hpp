#pragma once
// What the control plane reads from a request and how it answers: the
// request and reply as the routes see them (independent of Beast), the
// path, query, body and token parsing, and error replies.

#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace atask::http::detail {

struct Request {
  std::string_view method;  // "GET", "HEAD", "POST", ...; HEAD is routed as GET
  std::string_view target;  // raw request target: path and query
  std::string_view body;
  std::string_view accept;         // the Accept header: a job stream's format
  std::string_view last_event_id;  // the Last-Event-ID header: where an SSE client resumes
  bool authorized = true;          // false: a token is set and the request does not carry it
};

struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::string allow{};                // 405: the methods the path takes
  std::string content_disposition{};  // a download: attachment; filename="..."
  /// HEAD of a download: the length GET would send, without reading the file.
  std::optional<std::uint64_t> head_length{};
};

/// How a job stream is written, chosen by the request's Accept header.
enum class StreamFormat : unsigned char {
  json_array,  ///< default: one JSON array, one event per line
  ndjson,      ///< application/x-ndjson: one JSON object per line
  sse,         ///< text/event-stream: Server-Sent Events with ids
};

/// text/event-stream if the Accept header names it (q > 0), else
/// application/x-ndjson if it names that, else the JSON array.
StreamFormat stream_format(std::string_view accept);

/// What an exception says, for a reply: a boost::system::system_error
/// (Boost.JSON, Asio) gives its code's message, never the source location
/// its what() appends; anything else its what().
std::string message_of(const std::exception& e);

/// A JSON error reply: {"error": message, "status": status}.
Reply error_reply(int status, std::string_view message, std::string allow = {});

/// A JSON reply. Every JSON reply goes through here (and job events
/// through Api::job_event): numbers as people write them, not Boost.JSON's
/// 1E-1 (util/json_text.hpp).
Reply json_reply(const boost::json::value& v, int status = 200);

/// Splits "/a/b%20c?x=1" into decoded segments {"a", "b c"} and the query
/// "x=1". Nullopt for a target that is not origin-form, a bad %-escape, or a
/// decoded segment with a NUL or control character.
std::optional<std::vector<std::string>> split_path(std::string_view target, std::string_view& query);

/// Whether an Authorization header carries the token with the Bearer
/// scheme. The scheme is matched case-insensitively (RFC 7235: "bearer",
/// "BEARER"), one or more spaces may follow it, and the token is compared in
/// constant time.
bool bearer_matches(std::string_view header, std::string_view token) noexcept;

/// Whether `given` is the token, compared in constant time.
bool token_equals(std::string_view given, std::string_view token) noexcept;

/// True for 127.0.0.0/8 and ::1.
bool is_loopback(std::string_view address);

/// %-decodes one path segment or query value; nullopt for a bad escape or
/// a control byte.
std::optional<std::string> percent_decode(std::string_view s);

/// The value of `key` in a query string (not decoded: our values are plain words).
std::optional<std::string_view> query_param(std::string_view q, std::string_view key);

/// ?limit=N: 1..1000, 100 when absent; nullopt for anything else.
std::optional<std::size_t> limit_param(std::string_view query);

/// Parses a request body as JSON; an empty body is `empty`.
/// @throws ConversionError when it is not JSON.
boost::json::value parse_body(std::string_view body, boost::json::value empty);

}  // namespace atask::http::detail
