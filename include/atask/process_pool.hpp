#pragma once
// Short name for <atask/process/pool_options.hpp>.
#include <atask/process/pool_options.hpp>
