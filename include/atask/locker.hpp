#pragma once
// Short name for <atask/helpers/locker.hpp>.
#include <atask/helpers/locker.hpp>
