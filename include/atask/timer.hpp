#pragma once
// Short name for <atask/timers/timer.hpp>.
#include <atask/timers/timer.hpp>
