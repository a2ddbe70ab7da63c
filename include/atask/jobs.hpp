#pragma once
// Short name for <atask/jobs/jobs.hpp>.
#include <atask/jobs/jobs.hpp>
