#pragma once
// Short name for <atask/aloop/aloop.hpp>.
#include <atask/aloop/aloop.hpp>
