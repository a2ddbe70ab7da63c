#pragma once
/// @file
/// Everything in atask except the HTTP control plane (<atask/http.hpp>,
/// target atask::http). The areas, lowest layer first; an area's headers
/// include only their own area and the areas above them in this list.

// core: the vocabulary every layer shares
#include <atask/core/errors.hpp>
#include <atask/core/priority.hpp>
#include <atask/core/task.hpp>
// the engines the supervisor composes
#include <atask/pool/thread_pool.hpp>
#include <atask/aloop/aloop.hpp>
#include <atask/process/process.hpp>
// the root object
#include <atask/supervisor/supervisor.hpp>
// what runs on it
#include <atask/workers/workers.hpp>
#include <atask/workers/process.hpp>
#include <atask/timers/timer.hpp>
#include <atask/helpers/background_task.hpp>
#include <atask/helpers/collection.hpp>
#include <atask/helpers/locker.hpp>
#include <atask/jobs/jobs.hpp>
