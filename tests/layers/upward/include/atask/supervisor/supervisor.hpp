#pragma once
// Fixture: a higher layer including a lower one is fine.
#include <atask/core/bad.hpp>
