// Client: construction, send() and attach().
#include "distributed/client/impl.hpp"

#include <atask/tasks/registry.hpp>

#include "distributed/keys.hpp"
#include "distributed/retry_json.hpp"

#include <boost/json/serialize.hpp>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

namespace asio = boost::asio;
namespace json = boost::json;
using redis::cmd;
using redis::Reply;

Client::Client(ClientOptions options) : impl_(std::make_shared<detail::ClientImpl>(std::move(options))) {
  impl_->start();
}

Client::~Client() {
  impl_->shut_down();
}

const std::string& Client::broker() const noexcept {
  return impl_->options.broker;
}

std::vector<std::shared_ptr<detail::RemoteState>> Client::send_states(std::string_view name,
                                                                      std::vector<json::array> args,
                                                                      const SendOptions& o) {
  if (name.empty()) throw OptionsError("Client::send() - the task name is empty");
  std::string queue = "default";
  Priority prio = Priority::normal;
  if (impl_->options.registry)
    if (auto info = impl_->options.registry->find(name)) {
      queue = info->options.queue;
      prio = info->options.priority;
    }
  if (o.queue) queue = *o.queue;
  if (o.priority) prio = *o.priority;
  detail::check_queue_name("Client::send()", queue);
  if (o.max_deliveries == 0) throw OptionsError("Client::send() - max_deliveries must be at least 1");
  if (o.time_limit.count() < 0) throw OptionsError("Client::send() - time_limit is negative");
  if (o.result_ttl.count() <= 0) throw OptionsError("Client::send() - result_ttl must be positive");
  if (o.countdown.count() < 0) throw OptionsError("Client::send() - countdown is negative");
  if (o.idempotency_key) {
    if (o.idempotency_key->empty()) throw OptionsError("Client::send() - the idempotency key is empty");
    if (args.size() > 1)
      throw OptionsError("Client::send_many() - an idempotency key names one task: send them one by one");
  }
  std::chrono::milliseconds time_limit = o.time_limit;
  std::string retry;
  if (o.retry) {
    o.retry->check("Client::send()");
    retry = detail::retry_to_json(*o.retry);
  }
  if (impl_->options.registry)
    if (auto info = impl_->options.registry->find(name)) {
      if (time_limit.count() == 0) time_limit = info->options.time_limit;
      if (!o.retry && info->options.retry.max_attempts > 1)
        retry = detail::retry_to_json(info->options.retry);
    }
  long long eta_ms = 0;
  if (o.eta) {
    eta_ms = std::chrono::duration_cast<std::chrono::milliseconds>(o.eta->time_since_epoch()).count();
    if (eta_ms <= 0) eta_ms = 1;  // (0 means "none" to the function; the epoch is long past anyway)
  }

  const std::string stream = detail::stream_key(queue, prio);
  std::vector<std::shared_ptr<detail::RemoteState>> states;
  if (args.empty()) return states;
  std::vector<redis::Connection::Command> cs;
  states.reserve(args.size());
  cs.reserve(args.size());
  for (auto& a : args) {
    std::string id = detail::random_id();
    cs.push_back(cmd("FCALL", "atask_enqueue", "3", detail::task_key(id), stream, detail::delayed_key(queue),
                     id, std::string(name), json::serialize(a), queue, std::string(to_string(prio)),
                     impl_->channel, std::to_string(o.result_ttl.count()), std::to_string(o.max_deliveries),
                     std::to_string(time_limit.count()), std::to_string(o.countdown.count()),
                     std::to_string(eta_ms), retry));
    if (o.idempotency_key) {
      cs.back()[2] = "4";
      cs.back().insert(cs.back().begin() + 6, detail::idem_key(*o.idempotency_key));
    }
    states.push_back(std::make_shared<detail::RemoteState>(std::move(id), impl_));
  }
  // Waiting before the task exists: its outcome cannot be published unseen.
  {
    std::lock_guard lk(impl_->m);
    for (auto& st : states) impl_->waiting.emplace(st->id(), detail::ClientImpl::Waiting{st, false});
  }
  std::vector<Reply> replies;
  try {
    replies = impl_->run(detail::enqueue(impl_.get(), std::move(cs)));
  } catch (...) {
    std::lock_guard lk(impl_->m);
    for (auto& st : states) impl_->waiting.erase(st->id());
    throw;
  }
  std::vector<std::string> dups;  // sent before under the same idempotency key
  {
    std::lock_guard lk(impl_->m);
    for (std::size_t i = 0; i < states.size(); ++i) {
      if (i < replies.size() && replies[i].str.rfind("dup:", 0) == 0) {
        impl_->waiting.erase(states[i]->id());
        const std::string first = replies[i].str.substr(4);
        auto it = impl_->waiting.find(first);
        if (auto same = it != impl_->waiting.end() ? it->second.state.lock() : nullptr) {
          states[i] = std::move(same);  // this client waits for it already: one state
          continue;
        }
        states[i] = std::make_shared<detail::RemoteState>(first, impl_);
        impl_->waiting.insert_or_assign(first, detail::ClientImpl::Waiting{states[i], true});
        dups.push_back(first);
        continue;
      }
      if (auto it = impl_->waiting.find(states[i]->id()); it != impl_->waiting.end()) it->second.sent = true;
    }
  }
  // Its outcome is published to us from now on; it may have come already.
  if (!dups.empty()) impl_->run(impl_->refresh(std::move(dups)));
  return states;
}

std::shared_ptr<detail::RemoteState> Client::send_state(std::string_view name, json::array args,
                                                        const SendOptions& o) {
  std::vector<json::array> one;
  one.push_back(std::move(args));
  return send_states(name, std::move(one), o).front();
}

std::shared_ptr<detail::RemoteState> Client::attach_state(std::string_view id) {
  auto st = std::make_shared<detail::RemoteState>(std::string(id), impl_);
  {
    std::lock_guard lk(impl_->m);
    auto [it, fresh] = impl_->waiting.try_emplace(st->id(), detail::ClientImpl::Waiting{st, true, true});
    if (!fresh) {
      // This client sent it: a handle still alive hears its outcome anyway.
      if (auto live = it->second.state.lock()) return live;
      // Its handles are gone and the watch loop has not dropped the entry
      // yet: without this, the new state would never be settled (the entry
      // points at the old, expired one).
      it->second = detail::ClientImpl::Waiting{st, true, true};
    }
  }
  // A handle attached here is not on our reply channel: its outcome is
  // looked up now, then every 500 ms by the watch loop.
  impl_->run(impl_->refresh({std::string(id)}));
  return st;
}

}  // namespace atask::distributed
