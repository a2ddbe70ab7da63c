#pragma once
// Short name for <atask/process/process.hpp>, with the supervisor that
// submits what atask::process() binds.
#include <atask/process/process.hpp>
#include <atask/supervisor/supervisor.hpp>
