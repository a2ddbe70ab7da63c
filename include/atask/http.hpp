#pragma once
// Short name for <atask/http/server.hpp>.
#include <atask/http/server.hpp>
