// `atask send NAME ARGS_JSON`: sends one named task; with --wait, prints
// its result or its error and says how it ended in the exit code.

#include "cli/commands.hpp"

#include <atask/core/errors.hpp>
#include <atask/distributed/client.hpp>

#include "util/json_text.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <iostream>
#include <optional>

namespace atask::cli {

namespace json = boost::json;
namespace dist = atask::distributed;

namespace {

struct SendArgs {
  CommonOptions common;
  std::string broker;
  std::string name;
  std::string args_json;
  bool wait = false;
  double timeout = 0;
  std::string queue;
  std::string priority;
  double countdown = 0;
  std::string idempotency_key;
};

std::string check_args_json(const std::string& s) {
  boost::system::error_code ec;
  const json::value v = json::parse(s, ec);
  const std::string expected = "must be a JSON array, one element per parameter (e.g. '[2, 3]')";
  if (ec) return expected + "; this is not JSON (" + ec.message() + "): " + s;
  if (!v.is_array()) return expected + ", not " + s;
  return {};
}

int run_send(const SendArgs& a) {
  dist::SendOptions o;
  if (!a.queue.empty()) o.queue = a.queue;
  if (!a.priority.empty()) o.priority = from_string<Priority>(a.priority);
  o.countdown = seconds_to_ms(a.countdown);
  if (!a.idempotency_key.empty()) o.idempotency_key = a.idempotency_key;

  dist::Client client({.broker = a.broker});
  auto h = client.send(a.name, json::parse(a.args_json).as_array(), o);
  if (!a.wait) {
    if (a.common.json)
      print_json(json::object{{"id", h.id()}, {"name", a.name}});
    else
      std::cout << h.id() << std::endl;
    return exit_code::ok;
  }

  const bool done =
      a.timeout > 0 ? h.wait_for(seconds_to_ms(a.timeout)) : h.wait_for(std::chrono::hours(24 * 365 * 100));
  if (!done) {
    std::string status = "unknown";
    try {
      status = to_string(h.status());
    } catch (const std::exception&) {
    }
    if (a.common.json) print_json(json::object{{"id", h.id()}, {"status", status}, {"timeout", true}});
    std::cerr << "atask send: task " << h.id() << " (" << a.name << ") has not ended within " << a.timeout
              << " s; it is " << status << " and keeps going\n";
    return exit_code::stopped;
  }
  std::string status, etype, emsg;
  try {
    const json::value result = h.get();
    if (a.common.json)
      print_json(json::object{{"id", h.id()}, {"status", "succeeded"}, {"result", result}});
    else
      std::cout << detail::json_text(result) << std::endl;
    return exit_code::ok;
  } catch (const dist::RemoteError& e) {
    status = "failed";
    etype = e.type();
    emsg = e.message();
  } catch (const TaskCanceled& e) {
    status = "canceled";
    etype = "atask::TaskCanceled";
    emsg = e.what();
  }
  try {
    status = to_string(h.status());  // failed or dead
  } catch (const std::exception&) {
  }
  if (a.common.json)
    print_json(
        json::object{{"id", h.id()}, {"status", status}, {"error_type", etype}, {"error_message", emsg}});
  std::cerr << "atask send: task " << h.id() << " (" << a.name << ") " << status << ": " << etype << ": "
            << emsg << "\n";
  return exit_code::failed;
}

}  // namespace

Command send_command(CLI::App& root) {
  auto a = std::make_shared<SendArgs>();
  auto* app = root.add_subcommand("send", "Send a named task to the cluster");
  app->add_option("NAME", a->name, "The task's registered name")->required();
  app->add_option("ARGS_JSON", a->args_json, "Its arguments: a JSON array, one element per parameter")
      ->required()
      ->check(check_args_json, "JSON array");
  add_broker_option(*app, a->broker);
  app->add_flag("--wait", a->wait,
                "Wait for the task to end; print its result (JSON), or its error on stderr");
  app->add_option("--timeout", a->timeout, "With --wait: seconds to wait at most (0: no limit); exit 3 after")
      ->check(CLI::NonNegativeNumber);
  app->add_option("-q,--queue", a->queue, "The queue (default: \"default\")");
  app->add_option("-p,--priority", a->priority, "The priority (default: normal)")
      ->check(CLI::IsMember({"low", "normal", "high", "critical"}));
  app->add_option("--countdown", a->countdown, "Run no sooner than this many seconds from now")
      ->check(CLI::NonNegativeNumber);
  app->add_option(
      "--idempotency-key", a->idempotency_key,
      "A second send with the same key, while Redis has the first task, sends nothing and follows "
      "that task");
  add_json_option(*app, a->common);
  app->footer(
      "Prints the task id; with --wait the result. Exit codes: 0 sent (or succeeded), 1 the task failed, was "
      "canceled or went dead (or Redis refused), 2 usage, 3 --timeout passed (the task keeps going).");
  return {app, [a] { return run_send(*a); }};
}

}  // namespace atask::cli
