// Client: what it reads and changes in a queue (dead letters, requeue,
// counts), and ClientAccess, inspect.cpp's way to the command connection.
#include "distributed/client/access.hpp"
#include "distributed/client/impl.hpp"

#include "distributed/keys.hpp"

#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdlib>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

namespace asio = boost::asio;
using redis::cmd;
using redis::Reply;

std::vector<Client::DeadLetter> Client::dead_letters(std::string_view queue, std::size_t limit) {
  detail::check_queue_name("Client::dead_letters()", queue);
  auto r = impl_->run(
      impl_->call(cmd("XRANGE", detail::dead_key(queue), "-", "+", "COUNT", std::to_string(limit))));
  std::vector<DeadLetter> out;
  for (const auto& e : r.elements) {
    if (e.elements.size() != 2) continue;
    DeadLetter d;
    d.entry = e.elements[0].str;
    const auto& f = e.elements[1].elements;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
      const std::string& k = f[i].str;
      const std::string& v = f[i + 1].str;
      if (k == "id")
        d.task_id = v;
      else if (k == "name")
        d.name = v;
      else if (k == "args")
        d.args = v;
      else if (k == "etype")
        d.error_type = v;
      else if (k == "emsg")
        d.error_message = v;
      else if (k == "worker")
        d.worker = v;
      else if (k == "attempt")
        d.attempt = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
      else if (k == "history" && !v.empty())
        try {
          d.attempts = detail::parse_history(v);
        } catch (const std::exception&) {  // a foreign entry: its raw fields are what it has
        }
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::string Client::requeue(std::string_view queue, std::string_view entry) {
  detail::check_queue_name("Client::requeue()", queue);
  auto r = impl_->run(
      impl_->call(cmd("FCALL", "atask_requeue_dead", "1", detail::dead_key(queue), std::string(entry))));
  return r.str;
}

std::size_t Client::purge_dead(std::string_view queue) {
  detail::check_queue_name("Client::purge_dead()", queue);
  auto r = impl_->run(impl_->call(cmd("FCALL", "atask_purge_dead", "1", detail::dead_key(queue))));
  return static_cast<std::size_t>(std::max(0LL, r.integer));
}

std::size_t Client::delayed(std::string_view queue) {
  detail::check_queue_name("Client::delayed()", queue);
  auto r = impl_->run(impl_->call(cmd("ZCARD", detail::delayed_key(queue))));
  return static_cast<std::size_t>(std::max(0LL, r.integer));
}

std::array<std::size_t, priority_count> Client::queued(std::string_view queue) {
  detail::check_queue_name("Client::queued()", queue);
  auto replies = impl_->run([](detail::ClientImpl* c, std::string q) -> asio::awaitable<std::vector<Reply>> {
    auto conn = co_await c->command_conn();
    std::vector<redis::Connection::Command> cs;
    for (Priority p : all_priorities) {
      cs.push_back(cmd("XLEN", detail::stream_key(q, p)));
      cs.push_back(cmd("XINFO", "GROUPS", detail::stream_key(q, p)));
    }
    co_return co_await conn->pipeline(std::move(cs));
  }(impl_.get(), std::string(queue)));
  // Waiting = entries in the stream minus those delivered and not yet
  // acknowledged (a finished task's entry is deleted with its ack).
  std::array<std::size_t, priority_count> out{};
  for (std::size_t i = 0; i < priority_count && 2 * i + 1 < replies.size(); ++i) {
    long long n = replies[2 * i].integer, pending = 0;
    for (const auto& g : replies[2 * i + 1].elements) {
      bool ours = false;
      long long p = 0;
      for (std::size_t k = 0; k + 1 < g.elements.size(); k += 2) {
        if (g.elements[k].str == "name") ours = g.elements[k + 1].str == detail::group;
        if (g.elements[k].str == "pending") p = g.elements[k + 1].integer;
      }
      if (ours) pending = p;
    }
    out[i] = static_cast<std::size_t>(std::max(0LL, n - pending));
  }
  return out;
}

// ---- ClientAccess ---------------------------------------------------------------------------

namespace detail {

Reply ClientAccess::call(Client& c, redis::Connection::Command command) {
  return c.impl_->run(c.impl_->call(std::move(command)));
}

std::vector<Reply> ClientAccess::pipeline(Client& c, std::vector<redis::Connection::Command> commands) {
  return c.impl_->run([](ClientImpl* impl,
                         std::vector<redis::Connection::Command> cs) -> asio::awaitable<std::vector<Reply>> {
    auto conn = co_await impl->command_conn();
    co_return co_await conn->pipeline(std::move(cs));
  }(c.impl_.get(), std::move(commands)));
}

}  // namespace detail

}  // namespace atask::distributed
