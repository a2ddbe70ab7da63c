#pragma once
// Short name for <atask/workers/event.hpp>.
#include <atask/workers/event.hpp>
