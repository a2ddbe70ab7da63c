#include "keys.hpp"

#include <atask/core/errors.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <random>

namespace atask::distributed::detail {

extern const char functions_lua[];
extern const std::size_t functions_lua_size;

void check_queue_name(std::string_view where, std::string_view q) {
  const auto ok = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == ':' || c == '@' || c == '/';
  };
  if (q.empty()) throw OptionsError(std::string(where) + " - the queue name is empty");
  if (q.size() > 200)
    throw OptionsError(std::string(where) + " - the queue name is longer than 200 characters");
  if (!std::all_of(q.begin(), q.end(), ok))
    throw OptionsError(std::string(where) + " - queue '" + std::string(q) +
                       "': a queue name has only letters, digits and _ . - : @ /");
}

std::string_view functions_source() noexcept {
  return {functions_lua, functions_lua_size};
}

std::string random_id() {
  // Straight from the system's random source each time: no generator state
  // that a fork could duplicate.
  thread_local std::random_device rd;
  char buf[33];
  std::snprintf(buf, sizeof buf, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return buf;
}

}  // namespace atask::distributed::detail
