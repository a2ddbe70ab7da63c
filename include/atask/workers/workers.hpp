#pragma once
/// @file
/// Every worker type and factory.

#include <atask/workers/background.hpp>
#include <atask/workers/event.hpp>
#include <atask/workers/interval.hpp>
#include <atask/workers/queue.hpp>
#include <atask/workers/worker.hpp>
