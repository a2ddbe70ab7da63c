#pragma once
// Short name for <atask/workers/background.hpp>.
#include <atask/workers/background.hpp>
