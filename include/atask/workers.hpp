#pragma once
// Short name for <atask/workers/workers.hpp>.
#include <atask/workers/workers.hpp>
