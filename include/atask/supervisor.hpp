#pragma once
// Short name for <atask/supervisor/supervisor.hpp>.
#include <atask/supervisor/supervisor.hpp>
