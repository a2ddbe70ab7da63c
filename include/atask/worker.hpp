#pragma once
// Short name for <atask/workers/worker.hpp>.
#include <atask/workers/worker.hpp>
