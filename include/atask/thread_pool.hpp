#pragma once
// Short name for <atask/pool/thread_pool.hpp>.
#include <atask/pool/thread_pool.hpp>
