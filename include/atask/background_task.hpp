#pragma once
// Short name for <atask/helpers/background_task.hpp>.
#include <atask/helpers/background_task.hpp>
