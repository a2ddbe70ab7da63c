#pragma once
/// @file
/// Everything in atask.

#include <atask/aloop.hpp>
#include <atask/background_task.hpp>
#include <atask/collection.hpp>
#include <atask/errors.hpp>
#include <atask/jobs.hpp>
#include <atask/locker.hpp>
#include <atask/priority.hpp>
#include <atask/process.hpp>
#include <atask/process_worker.hpp>
#include <atask/supervisor.hpp>
#include <atask/task.hpp>
#include <atask/thread_pool.hpp>
#include <atask/timer.hpp>
#include <atask/workers.hpp>
