#pragma once
// Short name for <atask/workers/interval.hpp>.
#include <atask/workers/interval.hpp>
