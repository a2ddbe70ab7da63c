#pragma once
/// @file
/// Every worker type and factory.

#include <atask/background_worker.hpp>
#include <atask/event_worker.hpp>
#include <atask/interval_worker.hpp>
#include <atask/queue_worker.hpp>
#include <atask/worker.hpp>
