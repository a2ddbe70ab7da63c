// Fixture: a private include across peer areas (pool -> process) the checker must report.
#include "process/process_pool.hpp"
