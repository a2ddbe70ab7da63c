// The client's connections, its subscription, and how an outcome settles
// a handle (see impl.hpp).
#include "distributed/client/impl.hpp"

#include "distributed/keys.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include <cstdlib>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed::detail {

namespace json = boost::json;
using redis::cmd;
using redis::Reply;

RemoteStatus parse_status(const std::string& s) {
  if (auto v = from_string<RemoteStatus>(s)) return *v;
  throw BrokerError("a task hash in Redis has an unknown state '" + s + "'");
}

std::int64_t to_int(const Reply& r) {
  if (r.type == Reply::Type::integer) return r.integer;
  if (r.type != Reply::Type::string || r.str.empty()) return 0;
  try {
    return std::stoll(r.str);
  } catch (const std::exception&) {
    return 0;
  }
}

// The "history" field of a task hash (lua/00_library.lua, remember()).
std::vector<RemoteAttempt> parse_history(const std::string& text) {
  std::vector<RemoteAttempt> out;
  const json::value h = json::parse(text);
  for (const auto& v : h.as_array()) {
    if (!v.is_object()) continue;
    const auto& o = v.as_object();
    const auto num = [&](const char* k) -> std::int64_t {
      auto* x = o.if_contains(k);
      return x && x->is_number() ? x->to_number<std::int64_t>() : 0;
    };
    const auto str = [&](const char* k) -> std::string {
      auto* x = o.if_contains(k);
      return x && x->is_string() ? std::string(x->as_string()) : std::string();
    };
    RemoteAttempt a;
    a.attempt = static_cast<unsigned>(num("attempt"));
    a.error_type = str("etype");
    a.error_message = str("emsg");
    a.worker = str("worker");
    a.time_ms = num("time");
    out.push_back(std::move(a));
  }
  return out;
}

void ClientImpl::start() {
  thread = std::thread([this] { io.run(); });
  asio::co_spawn(io, watch(shared_from_this()), asio::detached);
}

void ClientImpl::shut_down() {
  asio::post(io, [this] {
    stopping = true;
    if (cmd_conn) cmd_conn->close();
    if (sub_conn) sub_conn->close();
    wake.cancel();
  });
  work.reset();
  if (thread.joinable()) thread.join();
  std::unordered_map<std::string, Waiting> left;
  {
    std::lock_guard lk(m);
    left.swap(waiting);
  }
  for (auto& [id, w] : left)
    if (auto st = w.state.lock())
      st->fail_here(std::make_exception_ptr(
          BrokerError("task " + id + ": the client was destroyed before the task ended")));
}

asio::awaitable<std::shared_ptr<redis::Connection>> ClientImpl::command_conn() {
  if (cmd_conn && cmd_conn->is_open() && sub_conn && sub_conn->is_open()) co_return cmd_conn;
  const auto deadline = std::chrono::steady_clock::now() + options.retry_for;
  auto backoff = std::chrono::milliseconds(50);
  for (;;) {
    std::string why;
    try {
      co_await connect();
      co_return cmd_conn;
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (std::chrono::steady_clock::now() + backoff > deadline)
      throw BrokerError("distributed::Client - no connection to Redis at " + endpoint.to_string() + ": " +
                        why);
    asio::steady_timer t(io, backoff);
    co_await t.async_wait(asio::use_awaitable);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

asio::awaitable<Reply> ClientImpl::call(redis::Connection::Command c) {
  const auto deadline = std::chrono::steady_clock::now() + options.retry_for;
  for (;;) {
    auto conn = co_await command_conn();
    std::exception_ptr failed;
    try {
      co_return co_await conn->call(c);
    } catch (const BrokerError&) {
      failed = std::current_exception();  // (GCC 12: no throw inside a coroutine's catch)
    }
    if (conn->is_open() || std::chrono::steady_clock::now() >= deadline) std::rethrow_exception(failed);
  }
}

asio::awaitable<void> ClientImpl::connect() {
  auto ex = co_await asio::this_coro::executor;
  if (!cmd_conn || !cmd_conn->is_open()) {
    // Named locals, not temporaries in the co_await: GCC 12 destroys a
    // class-type temporary there twice.
    redis::ConnectOptions co{.timeout = options.connect_timeout, .client_name = "atask-client"};
    auto c = co_await redis::Connection::connect(ex, endpoint, std::move(co));
    co_await c->call(cmd("FUNCTION", "LOAD", "REPLACE", std::string(functions_source())));
    cmd_conn = std::move(c);
  }
  if (!sub_conn || !sub_conn->is_open()) {
    redis::ConnectOptions co{.timeout = options.connect_timeout, .client_name = "atask-client-sub"};
    auto s = co_await redis::Connection::connect(ex, endpoint, std::move(co));
    std::weak_ptr<ClientImpl> self = weak_from_this();
    s->on_message([self](const std::string&, const std::string& payload) {
      auto me = self.lock();
      if (!me) return;
      me->on_published(payload);
    });
    co_await s->call(cmd("SUBSCRIBE", channel));
    sub_conn = std::move(s);
    // Outcomes published while we were not subscribed: look them up.
    asio::co_spawn(io, refresh(waiting_ids()), asio::detached);
  }
}

void ClientImpl::on_published(const std::string& payload) {
  const bool outcome = payload.rfind("o:", 0) == 0, progress = payload.rfind("p:", 0) == 0;
  if (!outcome && !progress) {
    asio::co_spawn(io, refresh({payload}), asio::detached);
    return;
  }
  std::vector<std::string> parts;  // id, then the fields; the last one takes the rest
  const std::size_t fields = outcome ? 5 : 3;
  std::size_t at = 2;
  while (parts.size() + 1 < fields) {
    const auto nl = payload.find('\n', at);
    if (nl == std::string::npos) break;
    parts.push_back(payload.substr(at, nl - at));
    at = nl + 1;
  }
  if (parts.size() + 1 < fields) {  // not ours to read: look the task up
    const auto nl = payload.find('\n', 2);
    const std::string id = payload.substr(2, nl == std::string::npos ? std::string::npos : nl - 2);
    if (outcome)
      asio::co_spawn(io, refresh({id}), asio::detached);
    else
      asio::co_spawn(io, read_progress(id), asio::detached);
    return;
  }
  parts.push_back(payload.substr(at));
  if (progress) {
    std::shared_ptr<RemoteState> st;
    {
      std::lock_guard lk(m);
      if (auto it = waiting.find(parts[0]); it != waiting.end()) st = it->second.state.lock();
    }
    if (st) st->set_progress({std::strtod(parts[1].c_str(), nullptr), std::move(parts[2])});
    return;
  }
  Reply r;
  r.type = Reply::Type::array;
  for (std::size_t i : {1, 3, 2, 4}) {  // as refresh() reads them: state, result, etype, emsg
    Reply f;
    f.type = Reply::Type::string;
    f.str = std::move(parts[i]);
    r.elements.push_back(std::move(f));
  }
  settle(parts[0], r);
}

std::vector<std::string> ClientImpl::waiting_ids() {
  std::lock_guard lk(m);
  std::vector<std::string> ids;
  ids.reserve(waiting.size());
  for (auto& [id, w] : waiting) ids.push_back(id);
  return ids;
}

asio::awaitable<void> ClientImpl::refresh(std::vector<std::string> ids) {
  if (ids.empty()) co_return;
  try {
    auto conn = co_await command_conn();
    std::vector<redis::Connection::Command> cs;
    cs.reserve(ids.size());
    for (auto& id : ids) cs.push_back(cmd("HMGET", task_key(id), "state", "result", "etype", "emsg"));
    auto replies = co_await conn->pipeline(std::move(cs));
    for (std::size_t i = 0; i < ids.size(); ++i) settle(ids[i], replies[i]);
  } catch (const std::exception&) {
    // The watch loop reconnects and refreshes again.
  }
}

asio::awaitable<void> ClientImpl::read_progress(std::string id) {
  std::shared_ptr<RemoteState> st;
  {
    std::lock_guard lk(m);
    if (auto it = waiting.find(id); it != waiting.end()) st = it->second.state.lock();
  }
  if (!st) co_return;
  try {
    auto conn = co_await command_conn();
    auto r = co_await conn->call(cmd("HMGET", task_key(id), "progress", "pmsg"));
    if (r.elements.size() == 2 && !r.elements[0].is_nil())
      st->set_progress({std::strtod(r.elements[0].str.c_str(), nullptr), r.elements[1].str});
  } catch (const std::exception&) {
    // Best effort: the next report, or the outcome, comes anyway.
  }
}

void ClientImpl::settle(const std::string& id, const Reply& r) {
  std::shared_ptr<RemoteState> st;
  if (r.type != Reply::Type::array || r.elements.size() != 4) return;
  const Reply& state = r.elements[0];
  RemoteStatus s{};
  if (state.is_nil()) {
    // Only for a task known to be in Redis: a send() under way has not
    // put it there yet.
    {
      std::lock_guard lk(m);
      auto it = waiting.find(id);
      if (it == waiting.end() || !it->second.sent) return;
    }
    st = take(id);
    if (st)
      st->finish(RemoteStatus::failed, nullptr, "atask::NotFoundError",
                 "task " + id + " is not known to Redis: its result expired, or Redis lost its data");
    return;
  }
  try {
    s = parse_status(state.str);
  } catch (const std::exception&) {
    return;
  }
  if (s == RemoteStatus::queued || s == RemoteStatus::started || s == RemoteStatus::delayed) return;
  st = take(id);
  if (!st) return;
  json::value result;
  std::string etype = r.elements[2].str, emsg = r.elements[3].str;
  if (s == RemoteStatus::succeeded) {
    boost::system::error_code ec;
    result = json::parse(r.elements[1].str, ec);
    if (ec) {
      s = RemoteStatus::failed;
      etype = "atask::ConversionError";
      emsg = "the stored result is not JSON: " + ec.message();
    }
  }
  st->finish(s, std::move(result), std::move(etype), std::move(emsg));
}

std::shared_ptr<RemoteState> ClientImpl::take(const std::string& id) {
  std::lock_guard lk(m);
  auto it = waiting.find(id);
  if (it == waiting.end()) return nullptr;
  auto st = it->second.state.lock();
  waiting.erase(it);
  return st;
}

asio::awaitable<void> ClientImpl::watch(std::shared_ptr<ClientImpl> self) {
  auto& me = *self;
  self.reset();  // the loop must not keep the client alive
  for (;;) {
    me.wake.expires_after(std::chrono::milliseconds(500));
    boost::system::error_code ec;
    co_await me.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (me.stopping) co_return;
    bool any;
    std::vector<std::string> polled;
    {
      std::lock_guard lk(me.m);
      std::erase_if(me.waiting, [](auto& kv) { return kv.second.state.expired(); });
      any = !me.waiting.empty();
      for (auto& [id, w] : me.waiting)
        if (w.polled) polled.push_back(id);
    }
    if (!any) continue;
    co_await me.refresh(std::move(polled));
    try {
      if (me.sub_conn && me.sub_conn->is_open()) {
        co_await me.sub_conn->call(cmd("PING"));
      } else {
        co_await me.command_conn();
      }
    } catch (const std::exception&) {
      // Next round.
    }
  }
}

asio::awaitable<std::vector<Reply>> enqueue(ClientImpl* c, std::vector<redis::Connection::Command> cs) {
  const auto deadline = std::chrono::steady_clock::now() + c->options.retry_for;
  std::vector<Reply> replies;
  replies.reserve(cs.size());
  for (std::size_t at = 0; at < cs.size();) {
    const std::size_t n = std::min(c->options.send_chunk, cs.size() - at);
    std::vector<redis::Connection::Command> chunk(std::make_move_iterator(cs.begin() + at),
                                                  std::make_move_iterator(cs.begin() + at + n));
    bool again = false;
    for (;;) {
      auto conn = co_await c->command_conn();
      std::vector<Reply> got;
      std::string lost;
      try {
        got = co_await conn->pipeline(chunk);
      } catch (const BrokerError& e) {
        lost = e.what();
      }
      if (!lost.empty()) {
        if (std::chrono::steady_clock::now() >= deadline) throw BrokerError("Client::send() - " + lost);
        again = true;
        continue;
      }
      for (auto& r : got)
        if (r.is_error() && !(again && r.str.find("exists already") != std::string::npos))
          throw BrokerError("Client::send() - Redis refused the task: " + r.str);
      for (auto& r : got) replies.push_back(std::move(r));
      break;
    }
    at += n;
  }
  co_return replies;
}

}  // namespace atask::distributed::detail
