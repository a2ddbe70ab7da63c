#include "keys.hpp"

#include <atask/core/errors.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <system_error>

#include <sys/random.h>

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
  // Straight from the kernel each time: no generator state that a fork
  // could duplicate. Not std::random_device: libstdc++ reads it with RDSEED
  // where the CPU offers it, retried up to 100 times when the instruction
  // fails, which it does often in a VM - 94 us per id on the 2-core VM,
  // where getrandom(2) takes 0.35 us (and the id was most of a client's CPU
  // per task).
  unsigned char bytes[16];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "getrandom() for a task id");
    }
    got += static_cast<std::size_t>(n);
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (std::size_t i = 0; i < sizeof bytes; ++i) {
    id[2 * i] = hex[bytes[i] >> 4];
    id[2 * i + 1] = hex[bytes[i] & 15];
  }
  return id;
}

}  // namespace atask::distributed::detail
