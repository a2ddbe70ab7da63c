#pragma once
// What Boost.JSON converts but JSON cannot carry: a NaN or infinite double
// (Boost.JSON writes NaN, Infinity, which no parser takes back) and a string
// that is not UTF-8 (the parser rejects it). Process tasks check their
// arguments at submit and their result in the child, so that such a value
// fails with a message that names it instead of a parser error in the
// other process.

#include <boost/json/value.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>

namespace atask::detail {

/// The offset of the first byte of `s` that does not start a valid UTF-8
/// sequence (RFC 3629: no overlong forms, no surrogates, nothing past
/// U+10FFFF - what Boost.JSON's parser accepts), or npos.
inline std::size_t invalid_utf8_at(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      return i;
    }
    if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

/// Why `v` cannot cross a process boundary as JSON, "" if it can. `at`
/// gets the JSON pointer of the value at fault ("" for v itself, "/2/x"
/// inside it); `to` names the other side ("to a child process").
inline std::string unsendable_json(const boost::json::value& v, std::string& at, std::string_view to) {
  switch (v.kind()) {
    case boost::json::kind::double_: {
      const double d = v.get_double();
      if (std::isnan(d)) return "a NaN double cannot be sent " + std::string(to) + " (JSON has no NaN)";
      if (std::isinf(d))
        return std::string(d > 0 ? "an infinite" : "a negative infinite") + " double cannot be sent " +
               std::string(to) + " (JSON has no infinity)";
      return {};
    }
    case boost::json::kind::string: {
      const std::size_t bad = invalid_utf8_at(v.get_string());
      if (bad == std::string_view::npos) return {};
      return "a string that is not valid UTF-8 (at byte offset " + std::to_string(bad) + ") cannot be sent " +
             std::string(to) + " (JSON strings are UTF-8)";
    }
    case boost::json::kind::array: {
      const auto& a = v.get_array();
      for (std::size_t i = 0; i < a.size(); ++i) {
        const std::size_t len = at.size();
        at += '/' + std::to_string(i);
        std::string why = unsendable_json(a[i], at, to);
        if (!why.empty()) return why;
        at.resize(len);
      }
      return {};
    }
    case boost::json::kind::object: {
      for (const auto& kv : v.get_object()) {
        const std::size_t bad = invalid_utf8_at(kv.key());
        if (bad != std::string_view::npos)
          return "an object key that is not valid UTF-8 (at byte offset " + std::to_string(bad) +
                 ") cannot be sent " + std::string(to) + " (JSON strings are UTF-8)";
        const std::size_t len = at.size();
        at += '/';
        for (char c : kv.key()) {  // JSON pointer escapes
          if (c == '~')
            at += "~0";
          else if (c == '/')
            at += "~1";
          else
            at += c;
        }
        std::string why = unsendable_json(kv.value(), at, to);
        if (!why.empty()) return why;
        at.resize(len);
      }
      return {};
    }
    default:
      return {};
  }
}

/// "argument 2: ..." / "result (at /items/0): ..." for a value that cannot
/// cross, "" for one that can. `what` names the value.
inline std::string check_sendable(const boost::json::value& v, std::string_view what, std::string_view to) {
  std::string at;
  std::string why = unsendable_json(v, at, to);
  if (why.empty()) return why;
  return std::string(what) + (at.empty() ? "" : " (at " + at + ")") + ": " + why;
}

}  // namespace atask::detail
