#pragma once
// Short name for <atask/supervisor/step.hpp>.
#include <atask/supervisor/step.hpp>
