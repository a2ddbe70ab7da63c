// The atask program: subcommands for running workers and beats, sending
// tasks and inspecting the cluster (docs/cli.md). This file parses the
// command line, runs the subcommand given and turns errors into exit codes.

#include "cli/commands.hpp"

#include <atask/core/errors.hpp>

#include <iostream>

namespace {

// "error: ...", the subcommand's usage line, and where its help is: exit 2.
int usage_error(const CLI::App& root, const CLI::App* sub, const std::string& what) {
  const std::string name = sub && sub != &root ? "atask " + sub->get_name() : "atask";
  std::cerr << name << ": error: " << what << "\n"
            << CLI::Formatter().make_usage(sub ? sub : &root, name) << "Run '" << name
            << " --help' for more.\n";
  return atask::cli::exit_code::usage;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace atask::cli;
  CLI::App app(
      "atask: run workers, beats and the API server, send tasks and inspect an atask cluster on Redis",
      "atask");
  app.set_version_flag("--version", "atask " ATASK_VERSION);
  app.require_subcommand(1, 1);
  app.footer(
      "Run 'atask COMMAND --help' for a command's options. Exit codes: 0 ok, 1 failed, 2 usage; worker and "
      "send "
      "use 3 and 4 too (docs/cli.md).");
  const std::vector<Command> commands{worker_command(app),  beat_command(app),    send_command(app),
                                      inspect_command(app), requeue_command(app), purge_command(app),
                                      plugins_command(app), api_command(app)};

  const CLI::App* selected = nullptr;
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const auto subs = app.get_subcommands();
    return usage_error(app, subs.empty() ? nullptr : subs.front(), e.what());
  }
  for (const auto& c : commands) {
    if (!c.app->parsed()) continue;
    selected = c.app;
    try {
      return c.run();
    } catch (const UsageError& e) {
      return usage_error(app, selected, e.what());
    } catch (const atask::OptionsError& e) {
      return usage_error(app, selected, e.what());
    } catch (const std::exception& e) {
      std::cerr << "atask " << selected->get_name() << ": error: " << e.what() << "\n";
      return exit_code::failed;
    }
  }
  return usage_error(app, nullptr, "no command given");
}
