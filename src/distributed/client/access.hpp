#pragma once
// How the parts of Client outside src/distributed/client/ (inspect.cpp) reach its
// command connection. Blocking: from any thread but the client's own.

#include <atask/distributed/client.hpp>

#include "distributed/redis/connection.hpp"

#include <vector>

namespace atask::distributed::detail {

struct ClientAccess {
  /// One command; an error reply throws BrokerError.
  static redis::Reply call(Client& c, redis::Connection::Command command);
  /// Several commands in one round trip; error replies are values.
  static std::vector<redis::Reply> pipeline(Client& c, std::vector<redis::Connection::Command> commands);
};

}  // namespace atask::distributed::detail
