// The consumer's fetch loop (reading its streams as slots free up) and its
// promotion of delayed tasks that are due.

#include "distributed/consumer/impl.hpp"

#include "distributed/consumer/promote_wait.hpp"
#include "distributed/keys.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

asio::awaitable<void> Consumer::Impl::fetch_loop(std::shared_ptr<Impl> self) {
  auto& me = *self;
  auto backoff = milliseconds(50);
  bool reread_own = true;  // after a (re)connect: entries ours in Redis but not here
  // Fewer free slots than refill_at: when they read anyway (refill_wait
  // after the first of them freed).
  std::optional<asio::steady_timer::time_point> refill_by;
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
      if (free == 0)
        refill_by.reset();
      else if (free < me.refill_at && !refill_by)
        refill_by = asio::steady_timer::clock_type::now() + me.opt.refill_wait;
      if (free == 0 || (free < me.refill_at && asio::steady_timer::clock_type::now() < *refill_by)) {
        // A slot freeing cancels the wait.
        me.slot->expires_at(free == 0 ? asio::steady_timer::time_point::max() : *refill_by);
        boost::system::error_code ec;
        co_await me.slot->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      refill_by.reset();
      if (co_await me.idle(free) == 0 && !me.stopping) co_await me.read(std::string(">"), 1, true);
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
  // No more waiting on the queues, and what was handed to this worker and
  // does not run here goes back now, unstarted (not when it leaves).
  try {
    Connection::Command c = cmd("FCALL", "atask_unidle", "0", me.name);
    for (auto& [key, f] : me.flights) c.push_back(f.id);
    const Reply r = co_await me.call(std::move(c), [] { return false; });
    if (r.integer > 0)
      me.log->info("consumer {}: {} tasks handed to it went back to their queues", me.name, r.integer);
  } catch (const std::exception& e) {
    me.log->debug("consumer {}: atask_unidle: {} (leaving does it)", me.name, e.what());
  }
  // A fetch connection opened while the stop was on its way: nothing may
  // keep the io_context busy once this worker has left.
  if (me.fetch_conn) me.fetch_conn->close();
  me.fetch_conn.reset();
  me.loop_ended();
}

asio::awaitable<std::size_t> Consumer::Impl::read(std::string from, std::size_t count, bool blocking) {
  auto conn = fetch_conn;  // (the member may be reset while we wait)
  if (!conn) throw BrokerError("the fetch connection is closed");
  Connection::Command c = cmd("XREADGROUP", "GROUP", std::string(detail::group), name);
  if (blocking) {
    c.push_back("COUNT");
    c.push_back(std::to_string(count));
    c.push_back("BLOCK");
    c.push_back(std::to_string(opt.block.count()));
  }
  c.push_back("STREAMS");
  c.push_back(inbox);
  for (auto& s : streams) c.push_back(s.key);
  if (from != "0") {
    for (std::size_t i = 0; i <= streams.size(); ++i) c.push_back(from);
    // stop() may close the connection under this read, and only this one:
    // closing it under atask_idle would lose starts already made.
    blocking_read = true;
    Reply r;
    std::exception_ptr failed;
    try {
      r = co_await conn->call(std::move(c));
    } catch (...) {
      failed = std::current_exception();
    }
    blocking_read = false;
    if (failed) std::rethrow_exception(failed);
    co_return dispatch_all(r, false);
  }
  // Our own pending entries, after a (re)connect. The whole inbox first,
  // the entries read before and those never read, in the same command as
  // the streams' pending entries: a task handed to us and still pending in
  // its stream runs from the start its hand-off brought, and no inbox entry
  // is left to be read later for a task that has run meanwhile.
  c.push_back(">");
  for (std::size_t i = 0; i < streams.size(); ++i) c.push_back("0");
  std::vector<Connection::Command> both;
  both.push_back(cmd("XREADGROUP", "GROUP", std::string(detail::group), name, "STREAMS", inbox, "0"));
  both.push_back(std::move(c));
  auto rs = co_await conn->pipeline(std::move(both));
  Reply all;
  all.type = Reply::Type::array;
  for (auto& r : rs) {
    if (r.is_error()) throw BrokerError("XREADGROUP: " + r.str);
    for (auto& e : r.elements) all.elements.push_back(std::move(e));
  }
  co_return dispatch_all(all, true);
}

asio::awaitable<std::size_t> Consumer::Impl::idle(std::size_t count) {
  auto conn = fetch_conn;
  if (!conn) throw BrokerError("the fetch connection is closed");
  Connection::Command c = cmd("FCALL", "atask_idle", std::to_string(streams.size()));
  for (auto& s : streams) c.push_back(s.key);
  c.push_back(name);
  c.push_back(std::to_string(count));
  // Lapses a second after the blocking read that follows would have ended.
  c.push_back(std::to_string((opt.block + milliseconds(1'000)).count()));
  c.push_back(std::to_string(opt.queues.size()));
  for (auto& q : opt.queues) c.push_back(q);
  std::vector<std::string> acks;
  acks.swap(taken);
  for (auto& e : acks) c.push_back(e);
  Reply r;
  std::exception_ptr failed;  // (no rethrow inside a handler: a GCC 12 coroutine trap)
  try {
    r = co_await conn->call(std::move(c));
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    // Not acknowledged: they go with the next call (an entry acknowledged
    // twice is harmless; the inbox goes when this worker leaves).
    taken.insert(taken.end(), acks.begin(), acks.end());
    std::rethrow_exception(failed);
  }
  // [[stream, entry, id, start...], ...]: read and started in the call.
  std::size_t n = 0;
  for (const auto& e : r.elements) {
    if (e.elements.size() < 2) continue;
    const Stream* s = find_stream(e.elements[0].str);
    if (!s) continue;
    std::optional<Reply> started;
    if (e.elements.size() > 3) {
      started.emplace();
      started->type = Reply::Type::array;
      started->elements.assign(e.elements.begin() + 3, e.elements.end());
    }
    n += launch(s, e.elements[1].str, e.elements.size() > 2 ? e.elements[2].str : std::string(),
                std::move(started), false);
  }
  co_return n;
}

std::size_t Consumer::Impl::dispatch_all(const Reply& r, bool own) {
  std::size_t n = 0;
  // Starts the inbox brought, by flight key. On a "0" read they wait for
  // their entries, which come in the same reply if they are still ours:
  // a hand-off whose task has ended meanwhile (its acknowledgement lost
  // with a connection) must not run again.
  std::map<std::string, Reply> handed;
  for (const auto& st : r.elements) {  // [[key, [[id, [f, v, ...]], ...]], ...]
    if (st.elements.size() != 2) continue;
    if (st.elements[0].str == inbox) {
      for (const auto& e : st.elements[1].elements) {
        if (e.elements.size() != 2) continue;
        taken.push_back(e.elements[0].str);
        std::string stream, entry, id;
        Reply start;
        start.type = Reply::Type::array;
        const auto& f = e.elements[1].elements;
        for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
          const std::string& k = f[i].str;
          if (k == "s")
            stream = f[i + 1].str;
          else if (k == "e")
            entry = f[i + 1].str;
          else if (k == "id")
            id = f[i + 1].str;
          else if (k.size() > 1 && k[0] == 'r')
            start.elements.push_back(f[i + 1]);  // r1, r2, ... in order
        }
        const Stream* s = find_stream(stream);
        if (!s || entry.empty()) continue;
        std::optional<Reply> brought;
        if (!start.elements.empty()) brought = std::move(start);
        if (own) {
          if (brought) handed[s->key + " " + entry] = std::move(*brought);
        } else {
          n += launch(s, entry, id, std::move(brought), true);
        }
      }
      continue;
    }
    const Stream* s = find_stream(st.elements[0].str);
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
      std::optional<Reply> brought;
      if (auto it = handed.find(s->key + " " + entry); it != handed.end()) brought = std::move(it->second);
      n += launch(s, entry, id, std::move(brought), true);
    }
  }
  return n;
}

const Consumer::Impl::Stream* Consumer::Impl::find_stream(const std::string& key) const {
  for (auto& x : streams)
    if (x.key == key) return &x;
  return nullptr;
}

std::size_t Consumer::Impl::launch(const Stream* s, const std::string& entry, const std::string& id,
                                   std::optional<Reply> started, bool handed) {
  // Entry ids are unique per stream only: two streams can hand out the
  // same id in the same millisecond.
  const std::string key = s->key + " " + entry;
  if (flights.count(key)) return 0;  // ours and running here
  auto& fl = flights[key];
  if (auto it = std::find(unmatched_cancels.begin(), unmatched_cancels.end(), id);
      !id.empty() && it != unmatched_cancels.end()) {
    unmatched_cancels.erase(it);
    fl.cancel_asked = true;  // asked before it came here (handed, or read in a reply on its way)
  }
  fl.stream = s;
  fl.entry = entry;
  fl.id = id;
  if (started && handed) ++this->handed;
  fl.started = std::move(started);
  ++in_flight;
  ++received;
  asio::co_spawn(sv.io_context(), run_one(shared_from_this(), key), asio::detached);
  return 1;
}

asio::awaitable<void> Consumer::Impl::ack_only(std::shared_ptr<Impl> self, const Stream* s,
                                               std::string entry) {
  try {
    co_await self->call(cmd("XACK", s->key, std::string(detail::group), entry), [] { return false; });
  } catch (const std::exception&) {
  }
}

void Consumer::Impl::delayed_at(std::int64_t due) {
  if (promoting) {
    // The call under way may have run before this task was queued, and
    // then its answer does not name it; the loop is not waiting on its
    // timer, so a cancel would be lost. The loop looks here after the call.
    if (due == 0 || heard_due == 0)
      heard_due = 0;
    else if (heard_due < 0 || due < heard_due)
      heard_due = due;
    return;
  }
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
  bool promote_failing = false;
  while (!me.stopping) {
    milliseconds wait = me.opt.block;
    me.promoting = true;
    me.heard_due = -1;
    try {
      Reply r = co_await me.call(promote, [&me] { return !me.stopping; });
      me.promoting = false;
      if (promote_failing) me.log->info("consumer {}: atask_promote works again", me.name);
      promote_failing = false;
      backoff = milliseconds(50);
      if (r.elements.size() == 3) {
        if (r.elements[0].integer >= limit) continue;  // more are due
        const auto w =
            detail::promote_wait(r.elements[1].integer, me.heard_due, r.elements[2].integer, me.opt.block);
        me.next_due = w.next_due;
        wait = w.wait;
      } else if (me.heard_due != -1) {
        wait = milliseconds(0);
      }
    } catch (const std::exception& e) {
      me.promoting = false;
      // call() retries a lost connection itself (the fetch loop reports
      // it), so what lands here while running is an error from Redis:
      // delayed tasks stay in their sets until it goes away. Said once per
      // run of failures, and when they end.
      if (!me.stopping && !promote_failing)
        me.log->error("consumer {}: atask_promote: {}", me.name, e.what());
      promote_failing = !me.stopping;
      wait = backoff;
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
