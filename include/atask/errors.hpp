#pragma once
// Short name for <atask/core/errors.hpp>.
#include <atask/core/errors.hpp>
