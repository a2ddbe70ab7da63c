#pragma once
// Fixture: an upward include (core -> supervisor) the checker must report.
#include <atask/supervisor/supervisor.hpp>
