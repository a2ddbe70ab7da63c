#pragma once
// Fixtures for tests that need atask objects but are not about making them.

#include "support.hpp"

#include <atask/supervisor.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <source_location>

namespace test {

// Supervisor::block() with a time limit: a shutdown that never ends aborts
// the test with a message instead of hanging until the CTest timeout.
inline atask::StopReport block_within(atask::Supervisor& sv, std::chrono::milliseconds limit = patience,
                                      std::source_location where = std::source_location::current()) {
  return call_within("Supervisor::block()", [&] { return sv.block(); }, limit, where);
}

}  // namespace test
