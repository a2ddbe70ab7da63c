#pragma once
// Short name for <atask/core/priority.hpp>.
#include <atask/core/priority.hpp>
