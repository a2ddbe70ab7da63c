#pragma once
// JSON text as people write it. Boost.JSON 1.81's serializer writes every
// double in scientific form (0.1 -> "1E-1", 12.5 -> "1.25E1"); the HTTP API,
// its job streams and the cluster view write their replies with json_text()
// instead, so that numbers read as they do in docs/http.md.

#include <boost/json/fwd.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace atask::detail {

/// Serializes like boost::json::serialize, except doubles: the shortest text
/// that reads back as the same double, in plain decimal notation for
/// 1e-9 <= |d| < 1e21 ("0.1", "12.5", "0.0001", "0.00000025") and with an
/// exponent outside that range ("1e-10", "1e21"). The lower bound is a
/// nanosecond, the steady clock's resolution: every duration in seconds the
/// API reports is written without an exponent. A
/// double always keeps a fraction or an exponent ("1.0", not "1"), so a typed
/// parser (Boost.JSON, Python's json) reads it back as a double; integers
/// stay integers. NaN and infinities, which JSON has no words for, are null.
std::string json_text(const boost::json::value& v);
std::string json_text(const boost::json::object& o);
std::string json_text(const boost::json::array& a);

/// Appends one double as json_text() writes it.
void append_json_number(std::string& out, double d);

/// A short JSON text of v for messages: at most about max_chars characters,
/// cut with "..." when longer.
std::string json_preview(const boost::json::value& v, std::size_t max_chars = 40);

}  // namespace atask::detail
