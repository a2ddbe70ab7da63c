// A remote handle's state: its outcome as it arrives, waits, continuations
// and progress, and the calls that ask Redis (info, attempts, cancel).
#include "distributed/client/impl.hpp"

#include "distributed/keys.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed::detail {

namespace json = boost::json;
using redis::cmd;
using redis::Reply;

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

}  // namespace atask::distributed::detail
