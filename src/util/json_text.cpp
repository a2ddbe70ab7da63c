#include "util/json_text.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include <charconv>
#include <cmath>

namespace atask::detail {

namespace json = boost::json;

namespace {

void append_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += hex[(c >> 4) & 0xf];
          out += hex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

template <class Int>
void append_int(std::string& out, Int i) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, i);
  out.append(buf, r.ptr);
}

void append(std::string& out, const json::value& v);

void append(std::string& out, const json::object& o) {
  out += '{';
  bool first = true;
  for (const auto& kv : o) {
    if (!first) out += ',';
    first = false;
    append_string(out, kv.key());
    out += ':';
    append(out, kv.value());
  }
  out += '}';
}

void append(std::string& out, const json::array& a) {
  out += '[';
  bool first = true;
  for (const auto& e : a) {
    if (!first) out += ',';
    first = false;
    append(out, e);
  }
  out += ']';
}

void append(std::string& out, const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      out += "null";
      break;
    case json::kind::bool_:
      out += v.get_bool() ? "true" : "false";
      break;
    case json::kind::int64:
      append_int(out, v.get_int64());
      break;
    case json::kind::uint64:
      append_int(out, v.get_uint64());
      break;
    case json::kind::double_:
      append_json_number(out, v.get_double());
      break;
    case json::kind::string:
      append_string(out, v.get_string());
      break;
    case json::kind::array:
      append(out, v.get_array());
      break;
    case json::kind::object:
      append(out, v.get_object());
      break;
  }
}

}  // namespace

void append_json_number(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  char buf[64];
  const double a = std::fabs(d);
  if (a == 0 || (a >= 1e-9 && a < 1e21)) {
    // Shortest round-trip text in plain notation: at most 21 integer digits,
    // or "0." with 9 zeros and 17 significant digits, well inside buf.
    auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
    const std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
    out += s;
    if (s.find('.') == std::string_view::npos) out += ".0";
    return;
  }
  // "1.5e-07" -> "1.5e-7", "1e+21" -> "1e21".
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  const std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  const auto e = s.find('e');
  out += s.substr(0, e + 1);
  std::size_t k = e + 1;
  if (s[k] == '-') out += s[k++];
  if (s[k] == '+') ++k;
  while (k + 1 < s.size() && s[k] == '0') ++k;
  out += s.substr(k);
}

std::string json_text(const json::value& v) {
  std::string out;
  append(out, v);
  return out;
}

std::string json_text(const json::object& o) {
  std::string out;
  append(out, o);
  return out;
}

std::string json_text(const json::array& a) {
  std::string out;
  append(out, a);
  return out;
}

std::string json_preview(const json::value& v, std::size_t max_chars) {
  std::string s = json_text(v);
  if (s.size() > max_chars) {
    std::size_t cut = max_chars;
    // Not inside a UTF-8 sequence: a message stays valid UTF-8.
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
    s.resize(cut);
    s += "...";
  }
  return s;
}

}  // namespace atask::detail
