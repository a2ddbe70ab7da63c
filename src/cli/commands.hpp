#pragma once
// The subcommands of the atask program, one file each; main.cpp adds them
// to the command line and runs the one that was given.

#include "cli/common.hpp"

namespace atask::cli {

Command worker_command(CLI::App& root);   // worker.cpp
Command beat_command(CLI::App& root);     // beat.cpp
Command send_command(CLI::App& root);     // send.cpp
Command inspect_command(CLI::App& root);  // inspect.cpp
Command requeue_command(CLI::App& root);  // inspect.cpp
Command purge_command(CLI::App& root);    // inspect.cpp
Command plugins_command(CLI::App& root);  // plugins.cpp
Command api_command(CLI::App& root);      // api.cpp

}  // namespace atask::cli
