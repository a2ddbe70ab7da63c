#pragma once
// Short name for <atask/workers/queue.hpp>.
#include <atask/workers/queue.hpp>
