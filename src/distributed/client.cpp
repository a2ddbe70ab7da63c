#include <atask/distributed/client.hpp>
#include <atask/tasks/registry.hpp>

#include "distributed/client_access.hpp"
#include "distributed/keys.hpp"
#include "distributed/retry_json.hpp"
#include "distributed/redis/connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdlib>
#include <thread>
#include <unordered_map>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

namespace asio = boost::asio;
namespace json = boost::json;
using redis::cmd;
using redis::Reply;

namespace {

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

}  // namespace

// ---- RemoteState ------------------------------------------------------------------------------

namespace detail {

class ClientImpl : public std::enable_shared_from_this<ClientImpl> {
 public:
  explicit ClientImpl(ClientOptions o)
      : options(std::move(o)),
        endpoint(redis::parse_url(options.broker)),
        channel("atask:r:" + random_id()) {}

  void start() {
    thread = std::thread([this] { io.run(); });
    asio::co_spawn(io, watch(shared_from_this()), asio::detached);
  }

  // Stops the I/O thread; the handles still waiting end with BrokerError.
  void shut_down() {
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

  // Runs a coroutine on the I/O thread and waits for it.
  template <class R>
  R run(asio::awaitable<R> a) {
    if (io.get_executor().running_in_this_thread())
      throw LifecycleError("distributed::Client - a blocking call from the client's own I/O thread");
    return asio::co_spawn(io, std::move(a), asio::use_future).get();
  }

  // The command connection, connected (and the subscription in place)
  // within retry_for.
  asio::awaitable<std::shared_ptr<redis::Connection>> command_conn() {
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

  // A command on the command connection; a lost connection is retried
  // within retry_for (the commands here are safe to repeat).
  asio::awaitable<Reply> call(redis::Connection::Command c) {
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

  asio::awaitable<void> connect() {
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

  // A message on this client's channel (lua/10_endings.lua, finish(), and
  // atask_progress): "o:<id>\n<state>\n<etype>\n<result>\n<emsg>" carries an
  // outcome, "p:<id>\n<fraction>\n<message>" a progress report, and a bare
  // "<id>" an outcome too large to carry (read from the task's hash).
  void on_published(const std::string& payload) {
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

  std::vector<std::string> waiting_ids() {
    std::lock_guard lk(m);
    std::vector<std::string> ids;
    ids.reserve(waiting.size());
    for (auto& [id, w] : waiting) ids.push_back(id);
    return ids;
  }

  // Reads the outcome of these tasks and completes the handles of those
  // that have ended.
  asio::awaitable<void> refresh(std::vector<std::string> ids) {
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

  asio::awaitable<void> read_progress(std::string id) {
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

  void settle(const std::string& id, const Reply& r) {
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

  std::shared_ptr<RemoteState> take(const std::string& id) {
    std::lock_guard lk(m);
    auto it = waiting.find(id);
    if (it == waiting.end()) return nullptr;
    auto st = it->second.state.lock();
    waiting.erase(it);
    return st;
  }

  // Keeps the subscription alive while handles wait: a PING every 500 ms
  // finds a lost connection, and a reconnect re-reads what was missed.
  static asio::awaitable<void> watch(std::shared_ptr<ClientImpl> self) {
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

  ClientOptions options;
  redis::Endpoint endpoint;
  const std::string channel;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  asio::steady_timer wake{io};
  std::thread thread;
  // I/O thread only:
  std::shared_ptr<redis::Connection> cmd_conn, sub_conn;
  bool stopping = false;
  // Handles waiting for an outcome, by task id.
  struct Waiting {
    std::weak_ptr<RemoteState> state;
    bool sent = false;    // Redis has the task (its send() returned)
    bool polled = false;  // not sent by this client: no message comes, the watch loop looks
  };
  std::mutex m;
  std::unordered_map<std::string, Waiting> waiting;
};

void RemoteState::finish(RemoteStatus s, json::value result, std::string etype, std::string emsg) {
  std::vector<atask::detail::UniqueFunction> cs;
  {
    std::lock_guard lk(m_);
    if (done_) return;
    done_ = true;
    status_ = s;
    result_ = std::move(result);
    etype_ = std::move(etype);
    emsg_ = std::move(emsg);
    cs.swap(continuations_);
  }
  cv_.notify_all();
  for (auto& f : cs) f();
}

void RemoteState::fail_here(std::exception_ptr e) {
  std::vector<atask::detail::UniqueFunction> cs;
  {
    std::lock_guard lk(m_);
    if (done_) return;
    done_ = true;
    status_ = RemoteStatus::failed;
    here_ = std::move(e);
    cs.swap(continuations_);
  }
  cv_.notify_all();
  for (auto& f : cs) f();
}

bool RemoteState::done() const {
  std::lock_guard lk(m_);
  return done_;
}

bool RemoteState::wait_until(std::chrono::steady_clock::time_point t) const {
  std::unique_lock lk(m_);
  if (t == std::chrono::steady_clock::time_point::max()) {
    cv_.wait(lk, [&] { return done_; });
    return true;
  }
  return cv_.wait_until(lk, t, [&] { return done_; });
}

std::exception_ptr RemoteState::error() const {
  std::lock_guard lk(m_);
  if (here_) return here_;
  const std::string where = "task " + id_ + ": ";
  switch (status_) {
    case RemoteStatus::succeeded:
    case RemoteStatus::queued:
    case RemoteStatus::started:
    case RemoteStatus::delayed:
      return nullptr;
    case RemoteStatus::canceled:
      return std::make_exception_ptr(TaskCanceled(where + "canceled" + (emsg_.empty() ? "" : ": " + emsg_)));
    case RemoteStatus::dead:
      return std::make_exception_ptr(
          RemoteError(where + "dead-lettered: " + etype_ + ": " + emsg_, etype_, emsg_));
    case RemoteStatus::failed:
      break;
  }
  return std::make_exception_ptr(RemoteError(where + etype_ + ": " + emsg_, etype_, emsg_));
}

const json::value& RemoteState::result() const {
  if (auto e = error()) std::rethrow_exception(e);
  std::lock_guard lk(m_);
  if (!done_) throw Error("task " + id_ + ": no result yet");
  return result_;
}

void RemoteState::on_done(atask::detail::UniqueFunction f) {
  {
    std::lock_guard lk(m_);
    if (!done_) {
      continuations_.push_back(std::move(f));
      return;
    }
  }
  f();
}

void RemoteState::set_progress(RemoteProgress p) {
  std::vector<std::function<void(const RemoteProgress&)>> ls;
  {
    std::lock_guard lk(m_);
    if (done_) return;
    progress_ = p;
    ls = progress_listeners_;
  }
  for (auto& f : ls) f(p);
}

std::optional<RemoteProgress> RemoteState::progress() const {
  std::lock_guard lk(m_);
  return progress_;
}

void RemoteState::on_progress(std::function<void(const RemoteProgress&)> f) {
  std::optional<RemoteProgress> now;
  {
    std::lock_guard lk(m_);
    progress_listeners_.push_back(f);
    now = progress_;
  }
  if (now) f(*now);
}

RemoteInfo RemoteState::info() const {
  auto c = client_.lock();
  if (!c) throw BrokerError("RemoteHandle::info() - the client is gone");
  const std::string id = id_;
  return c->run([](ClientImpl* c, std::string id) -> asio::awaitable<RemoteInfo> {
    auto r = co_await c->call(cmd("HMGET", task_key(id), "state", "name", "queue", "prio", "attempt", "owner",
                                  "created", "started", "finished", "etype", "emsg", "due"));
    if (r.elements.size() != 12 || r.elements[0].is_nil())
      throw NotFoundError("RemoteHandle::info() - task " + id +
                          " is not known to Redis (its result expired?)");
    RemoteInfo i;
    i.id = id;
    i.status = parse_status(r.elements[0].str);
    i.name = r.elements[1].str;
    i.queue = r.elements[2].str;
    i.priority = from_string<Priority>(r.elements[3].str).value_or(Priority::normal);
    i.attempt = static_cast<unsigned>(to_int(r.elements[4]));
    i.worker = r.elements[5].str;
    i.created_ms = to_int(r.elements[6]);
    i.started_ms = to_int(r.elements[7]);
    i.finished_ms = to_int(r.elements[8]);
    i.error_type = r.elements[9].str;
    i.error_message = r.elements[10].str;
    i.due_ms = to_int(r.elements[11]);
    co_return i;
  }(c.get(), id));
}

std::vector<RemoteAttempt> RemoteState::attempts() const {
  auto c = client_.lock();
  if (!c) throw BrokerError("RemoteHandle::attempts() - the client is gone");
  const std::string id = id_;
  auto r = c->run([](ClientImpl* c, std::string id) -> asio::awaitable<Reply> {
    co_return co_await c->call(cmd("HMGET", task_key(id), "state", "history"));
  }(c.get(), id));
  if (r.elements.size() != 2 || r.elements[0].is_nil())
    throw NotFoundError("RemoteHandle::attempts() - task " + id +
                        " is not known to Redis (its result expired?)");
  if (r.elements[1].is_nil() || r.elements[1].str.empty()) return {};
  try {
    return parse_history(r.elements[1].str);
  } catch (const std::exception&) {
    throw BrokerError("RemoteHandle::attempts() - task " + id + ": its history is not JSON");
  }
}

bool RemoteState::cancel() const {
  auto c = client_.lock();
  if (!c) throw BrokerError("RemoteHandle::cancel() - the client is gone");
  const std::string id = id_;
  const std::string r = c->run([](ClientImpl* c, std::string id) -> asio::awaitable<std::string> {
    auto r = co_await c->call(cmd("FCALL", "atask_cancel", "1", task_key(id), id));
    co_return r.str;
  }(c.get(), id));
  if (r == "canceled") asio::co_spawn(c->io, c->refresh({id}), asio::detached);
  return r == "canceled" || r == "requested";  // else "unknown" or "ended:<state>"
}

}  // namespace detail

// ---- Client -----------------------------------------------------------------------------------

namespace {

// Sends the enqueue calls. A connection lost on the way is retried within
// retry_for with the same task ids: "exists already" then means that the
// first try got through.
asio::awaitable<std::vector<Reply>> enqueue(detail::ClientImpl* c,
                                            std::vector<redis::Connection::Command> cs) {
  const auto deadline = std::chrono::steady_clock::now() + c->options.retry_for;
  bool again = false;
  for (;;) {
    auto conn = co_await c->command_conn();
    std::vector<Reply> replies;
    std::string lost;
    try {
      replies = co_await conn->pipeline(cs);
    } catch (const BrokerError& e) {
      lost = e.what();
    }
    if (!lost.empty()) {
      if (std::chrono::steady_clock::now() >= deadline) throw BrokerError("Client::send() - " + lost);
      again = true;
      continue;
    }
    for (auto& r : replies)
      if (r.is_error() && !(again && r.str.find("exists already") != std::string::npos))
        throw BrokerError("Client::send() - Redis refused the task: " + r.str);
    co_return replies;
  }
}

}  // namespace

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
    replies = impl_->run(enqueue(impl_.get(), std::move(cs)));
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
    (void)impl_->run(enqueue(impl_.get(), std::move(one)));
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
          d.attempts = parse_history(v);
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
