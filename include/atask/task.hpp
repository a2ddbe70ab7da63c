#pragma once
// Short name for <atask/core/task.hpp>.
#include <atask/core/task.hpp>
