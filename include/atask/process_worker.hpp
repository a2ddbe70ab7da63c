#pragma once
// Short name for <atask/workers/process.hpp>.
#include <atask/workers/process.hpp>
