// Client: chains, groups and chords (lua/60_workflows.lua).
#include "distributed/client/impl.hpp"

#include <atask/tasks/registry.hpp>

#include "distributed/keys.hpp"
#include "distributed/retry_json.hpp"

#include <boost/json/serialize.hpp>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

namespace json = boost::json;
using redis::cmd;

namespace {

// A step's fields as atask_chain and atask_group take them: name, args,
// queue, priority, ttl, max deliveries, time limit, retry.
void push_step(redis::Connection::Command& c, const ChainStep& st, const std::string& where,
               const TaskRegistry* registry) {
  if (st.name.empty()) throw OptionsError(where + ": the task name is empty");
  const SendOptions& o = st.options;
  if (o.countdown.count() != 0 || o.eta || o.idempotency_key)
    throw OptionsError(where + ": countdown, eta and idempotency_key are for send() only");
  if (o.max_deliveries == 0) throw OptionsError(where + ": max_deliveries must be at least 1");
  if (o.time_limit.count() < 0) throw OptionsError(where + ": time_limit is negative");
  if (o.result_ttl.count() <= 0) throw OptionsError(where + ": result_ttl must be positive");
  std::string queue = "default";
  Priority prio = Priority::normal;
  std::chrono::milliseconds time_limit = o.time_limit;
  std::string retry;
  if (o.retry) {
    o.retry->check(where.c_str());
    retry = detail::retry_to_json(*o.retry);
  }
  if (registry)
    if (auto info = registry->find(st.name)) {
      queue = info->options.queue;
      prio = info->options.priority;
      if (time_limit.count() == 0) time_limit = info->options.time_limit;
      if (!o.retry && info->options.retry.max_attempts > 1)
        retry = detail::retry_to_json(info->options.retry);
    }
  if (o.queue) queue = *o.queue;
  if (o.priority) prio = *o.priority;
  detail::check_queue_name(where, queue);
  for (std::string v : {st.name, json::serialize(st.args), queue, std::string(to_string(prio)),
                        std::to_string(o.result_ttl.count()), std::to_string(o.max_deliveries),
                        std::to_string(time_limit.count()), retry})
    c.push_back(std::move(v));
}

}  // namespace

std::vector<std::shared_ptr<detail::RemoteState>> Client::run_states(redis::Connection::Command c,
                                                                     std::vector<std::string> ids) {
  std::vector<std::shared_ptr<detail::RemoteState>> states;
  for (auto& id : ids) states.push_back(std::make_shared<detail::RemoteState>(std::move(id), impl_));
  {
    std::lock_guard lk(impl_->m);
    for (auto& st : states) impl_->waiting.emplace(st->id(), detail::ClientImpl::Waiting{st, false});
  }
  try {
    std::vector<redis::Connection::Command> one{std::move(c)};
    (void)impl_->run(detail::enqueue(impl_.get(), std::move(one)));
  } catch (...) {
    std::lock_guard lk(impl_->m);
    for (auto& st : states) impl_->waiting.erase(st->id());
    throw;
  }
  std::lock_guard lk(impl_->m);
  for (auto& st : states)
    if (auto it = impl_->waiting.find(st->id()); it != impl_->waiting.end()) it->second.sent = true;
  return states;
}

std::shared_ptr<detail::RemoteState> Client::chain_state(std::vector<ChainStep> steps) {
  if (steps.empty()) throw OptionsError("Client::chain() - no steps");
  const std::string chain = detail::random_id();
  redis::Connection::Command c =
      cmd("FCALL", "atask_chain", "0", chain, impl_->channel, std::to_string(steps.size()));
  for (std::size_t k = 0; k < steps.size(); ++k)
    push_step(c, steps[k], "Client::chain() - step " + std::to_string(k), impl_->options.registry);
  return run_states(std::move(c), {chain + ":" + std::to_string(steps.size() - 1)}).front();
}

std::vector<std::shared_ptr<detail::RemoteState>> Client::group_states(std::vector<ChainStep> members,
                                                                       std::optional<ChainStep> callback) {
  const char* what = callback ? "Client::chord()" : "Client::group()";
  if (members.empty()) throw OptionsError(std::string(what) + " - no members");
  const std::string group = detail::random_id();
  redis::Connection::Command c = cmd("FCALL", "atask_group", "0", group, impl_->channel,
                                     std::to_string(members.size()), callback ? "1" : "0");
  std::vector<std::string> ids;
  for (std::size_t k = 0; k < members.size(); ++k) {
    push_step(c, members[k], std::string(what) + " - member " + std::to_string(k), impl_->options.registry);
    ids.push_back(group + ":" + std::to_string(k));
  }
  if (callback) {
    push_step(c, *callback, std::string(what) + " - the callback", impl_->options.registry);
    ids.push_back(group + ":cb");
  }
  return run_states(std::move(c), std::move(ids));
}

}  // namespace atask::distributed
