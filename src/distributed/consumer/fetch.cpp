// The consumer's fetch loop (reading its streams as slots free up) and its
// promotion of delayed tasks that are due.

#include "distributed/consumer/impl.hpp"

#include "distributed/keys.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

asio::awaitable<void> Consumer::Impl::fetch_loop(std::shared_ptr<Impl> self) {
  auto& me = *self;
  auto backoff = milliseconds(50);
  bool reread_own = true;  // after a (re)connect: entries ours in Redis but not here
  while (!me.stopping) {
    std::string failed;
    try {
      co_await me.command();
      if (me.stopping) break;  // stopped while connecting: open nothing more
      if (!me.fetch_conn || !me.fetch_conn->is_open()) {
        me.fetch_conn = co_await me.open("fetch");
        reread_own = true;
      }
      if (reread_own) {
        co_await me.read(std::string("0"), 0, false);
        reread_own = false;
      }
      const std::size_t free = me.opt.prefetch > me.flights.size() ? me.opt.prefetch - me.flights.size() : 0;
      if (free < me.refill_at) {
        me.slot->expires_at(asio::steady_timer::time_point::max());
        boost::system::error_code ec;
        co_await me.slot->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (co_await me.read(std::string(">"), free, false) == 0 && !me.stopping)
        co_await me.read(std::string(">"), 1, true);
      backoff = milliseconds(50);
    } catch (const std::exception& e) {
      failed = e.what();
    }
    if (!failed.empty() && !me.stopping) {
      me.note_lost(failed);
      if (me.fetch_conn) me.fetch_conn->close();
      co_await sleep_for(backoff);
      backoff = std::min(backoff * 2, me.opt.max_backoff);
    }
  }
  // A fetch connection opened while the stop was on its way: nothing may
  // keep the io_context busy once this worker has left.
  if (me.fetch_conn) me.fetch_conn->close();
  me.fetch_conn.reset();
  me.loop_ended();
}

asio::awaitable<std::size_t> Consumer::Impl::read(std::string from, std::size_t count, bool blocking) {
  std::size_t got = 0;
  auto conn = fetch_conn;  // (the member may be reset while we wait)
  if (!conn) throw BrokerError("the fetch connection is closed");
  if (blocking || from == "0") {
    Connection::Command c = cmd("XREADGROUP", "GROUP", std::string(detail::group), name);
    if (blocking) {
      c.push_back("COUNT");
      c.push_back(std::to_string(count));
      c.push_back("BLOCK");
      c.push_back(std::to_string(opt.block.count()));
    }
    c.push_back("STREAMS");
    for (auto& s : streams) c.push_back(s.key);
    for (std::size_t i = 0; i < streams.size(); ++i) c.push_back(from);
    auto r = co_await conn->call(std::move(c));
    got += dispatch_all(r, from == "0");
    co_return got;
  }
  for (auto& s : streams) {
    if (count == got || stopping) break;
    auto r = co_await conn->call(cmd("XREADGROUP", "GROUP", std::string(detail::group), name, "COUNT",
                                     std::to_string(count - got), "STREAMS", s.key, ">"));
    got += dispatch_all(r, false);
  }
  co_return got;
}

std::size_t Consumer::Impl::dispatch_all(const Reply& r, bool own) {
  std::size_t n = 0;
  for (const auto& st : r.elements) {  // [[key, [[id, [f, v, ...]], ...]], ...]
    if (st.elements.size() != 2) continue;
    const Stream* s = nullptr;
    for (auto& x : streams)
      if (x.key == st.elements[0].str) s = &x;
    if (!s) continue;
    for (const auto& e : st.elements[1].elements) {
      if (e.elements.size() != 2) continue;
      const std::string& entry = e.elements[0].str;
      std::string id;
      const auto& f = e.elements[1].elements;  // nil for an entry deleted meanwhile
      for (std::size_t i = 0; i + 1 < f.size(); i += 2)
        if (f[i].str == "id") id = f[i + 1].str;
      if (own && f.empty()) {
        // Deleted from the stream while pending: nothing to run.
        asio::co_spawn(sv.io_context(), ack_only(shared_from_this(), s, entry), asio::detached);
        continue;
      }
      // Entry ids are unique per stream only: two streams can hand out
      // the same id in the same millisecond.
      const std::string key = s->key + " " + entry;
      if (flights.count(key)) continue;  // ours and running here
      auto& fl = flights[key];
      fl.stream = s;
      fl.entry = entry;
      fl.id = id;
      ++in_flight;
      ++received;
      ++n;
      asio::co_spawn(sv.io_context(), run_one(shared_from_this(), key), asio::detached);
    }
  }
  return n;
}

asio::awaitable<void> Consumer::Impl::ack_only(std::shared_ptr<Impl> self, const Stream* s,
                                               std::string entry) {
  try {
    co_await self->call(cmd("XACK", s->key, std::string(detail::group), entry), [] { return false; });
  } catch (const std::exception&) {
  }
}

void Consumer::Impl::delayed_at(std::int64_t due) {
  if (due != 0 && next_due >= 0 && due >= next_due) return;
  if (due != 0) next_due = due;
  if (due_wake) due_wake->cancel();
}

asio::awaitable<void> Consumer::Impl::delay_loop(std::shared_ptr<Impl> self) {
  auto& me = *self;
  constexpr int limit = 200;
  Connection::Command promote = cmd("FCALL", "atask_promote", std::to_string(me.opt.queues.size()));
  for (auto& q : me.opt.queues) promote.push_back(detail::delayed_key(q));
  promote.push_back(std::to_string(limit));
  auto backoff = milliseconds(50);
  while (!me.stopping) {
    milliseconds wait = me.opt.block;
    try {
      Reply r = co_await me.call(promote, [&me] { return !me.stopping; });
      backoff = milliseconds(50);
      if (r.elements.size() == 3) {
        me.next_due = r.elements[1].integer;
        if (r.elements[0].integer >= limit) continue;  // more are due
        if (me.next_due >= 0)
          wait = std::clamp(milliseconds(me.next_due - r.elements[2].integer), milliseconds(0), me.opt.block);
      }
    } catch (const std::exception&) {
      wait = backoff;  // (the fetch loop reports the lost connection)
      backoff = std::min(backoff * 2, me.opt.max_backoff);
    }
    if (me.stopping) break;
    me.due_wake->expires_after(wait);
    boost::system::error_code ec;
    co_await me.due_wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  me.loop_ended();
}

}  // namespace atask::distributed
