#pragma once
// Short name for <atask/core/worker_info.hpp>.
#include <atask/core/worker_info.hpp>
