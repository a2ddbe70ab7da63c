#pragma once
// Short name for <atask/helpers/collection.hpp>.
#include <atask/helpers/collection.hpp>
