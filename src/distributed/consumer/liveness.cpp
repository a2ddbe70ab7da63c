// The consumer's liveness: cancel requests and due-time messages heard on
// its subscription, heartbeats, reaping dead workers, and leaving the cluster.

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
#include <cstdlib>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

void Consumer::Impl::cancel_by_id(const std::string& id) {
  bool found = false;
  for (auto& [e, f] : flights) {
    if (f.id != id) continue;
    found = true;
    if (!f.handle.valid()) {
      f.cancel_asked = true;  // not submitted yet: run_one looks before it submits
    } else if (!f.user_canceled) {
      f.user_canceled = true;
      (void)f.handle.cancel();
      log->info("consumer {}: task {} asked to cancel", name, f.id);
    }
  }
  if (!found &&
      std::find(unmatched_cancels.begin(), unmatched_cancels.end(), id) == unmatched_cancels.end()) {
    unmatched_cancels.push_back(id);
    if (unmatched_cancels.size() > 1024) unmatched_cancels.pop_front();
  }
}

asio::awaitable<void> Consumer::Impl::cancel_loop(std::shared_ptr<Impl> self) {
  auto& me = *self;
  std::weak_ptr<Impl> weak = self;
  auto backoff = milliseconds(50);
  while (!me.leaving) {
    std::string failed;
    try {
      if (!me.sub_conn || !me.sub_conn->is_open()) {
        auto c = co_await me.open("cancel");
        c->on_message([weak](const std::string& channel, const std::string& payload) {
          auto i = weak.lock();
          if (!i) return;
          if (channel == detail::cancel_channel(i->name))
            i->cancel_by_id(payload);
          else
            i->delayed_at(std::atoll(payload.c_str()));
        });
        // One SUBSCRIBE per channel: Redis confirms each channel with a
        // reply of its own.
        std::vector<Connection::Command> subs{cmd("SUBSCRIBE", detail::cancel_channel(me.name))};
        for (auto& q : me.opt.queues) subs.push_back(cmd("SUBSCRIBE", detail::due_channel(q)));
        co_await c->pipeline(std::move(subs));
        me.sub_conn = std::move(c);
        me.delayed_at(0);  // messages missed while unsubscribed: look now
        backoff = milliseconds(50);
      }
      me.sub_wake->expires_after(me.opt.heartbeat);
      boost::system::error_code ec;
      co_await me.sub_wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (me.leaving) break;
      co_await me.sub_conn->call(cmd("PING"));  // finds a lost connection
    } catch (const std::exception& e) {
      failed = e.what();
    }
    if (!failed.empty() && !me.leaving) {
      if (me.sub_conn) me.sub_conn->close();
      co_await sleep_for(backoff);
      backoff = std::min(backoff * 2, me.opt.max_backoff);
    }
  }
  me.sub_conn.reset();
  me.loop_ended();
}

asio::awaitable<void> Consumer::Impl::liveness_loop(std::shared_ptr<Impl> self) {
  auto& me = *self;
  auto next_reap = std::chrono::steady_clock::now();
  while (!me.leaving) {
    // First a period's wait: the fetch loop registers this worker.
    me.hb_wake->expires_after(me.opt.heartbeat);
    boost::system::error_code ec;
    co_await me.hb_wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (me.leaving) break;
    std::string failed;
    try {
      if (!me.hb_conn || !me.hb_conn->is_open()) me.hb_conn = co_await me.open("heartbeat");
      Connection::Command hb =
          cmd("FCALL", "atask_heartbeat", "", std::string(detail::workers_key), detail::worker_key(me.name));
      for (auto& [e, f] : me.flights)
        if (f.handle.valid()) hb.push_back(detail::task_key(f.id));
      hb[2] = std::to_string(hb.size() - 3);
      hb.push_back(me.name);
      // For Client::workers(): what this worker has done so far.
      hb.push_back(std::to_string(me.succeeded.load()));
      hb.push_back(std::to_string(me.failed.load()));
      hb.push_back(std::to_string(me.retried.load()));
      hb.push_back(std::to_string(me.reaped.load()));
      // How long this worker's monotonic clock ran since its last heartbeat:
      // atask_heartbeat compares it with Redis's clock to find a step of
      // the latter (70_workers.lua).
      const auto sent = std::chrono::steady_clock::now();
      const long long mono = me.last_heartbeat
                                 ? std::chrono::duration_cast<milliseconds>(sent - *me.last_heartbeat).count()
                                 : -1;
      hb.push_back(std::to_string(mono));
      hb.push_back(std::to_string(me.opt.dead_after.count()));
      Reply r = co_await me.hb_conn->call(std::move(hb));
      me.last_heartbeat = sent;
      if (r.elements.size() == 3 && r.elements[2].integer > 0) {
        ++me.clock_steps;
        me.log->warn(
            "consumer {}: Redis's clock ran {} ms ahead of this worker's since its last heartbeat (a clock "
            "step): no worker is presumed dead for the next {} ms",
            me.name, r.elements[2].integer, me.opt.dead_after.count());
      }
      if (r.elements.size() >= 2) {
        if (r.elements[0].integer == 1) {
          me.log->warn(
              "consumer {}: Redis did not know this worker (presumed dead, or Redis lost its data): "
              "registering again",
              me.name);
          co_await me.hb_conn->call(me.register_command());
        }
        for (const auto& id : r.elements[1].elements) me.cancel_by_id(id.str);
      }
      // A sweep follows a heartbeat that could see a clock step: not the
      // first one, which has no last heartbeat to compare with.
      if (mono >= 0 && std::chrono::steady_clock::now() >= next_reap) {
        next_reap = std::chrono::steady_clock::now() + me.opt.reap_every;
        const auto lock_ms = std::max<long long>(1, me.opt.reap_every.count() * 9 / 10);
        Reply rr = co_await me.hb_conn->call(cmd(
            "FCALL", "atask_reap", "2", std::string(detail::workers_key), std::string(detail::reap_lock_key),
            std::to_string(me.opt.dead_after.count()), std::to_string(lock_ms), me.name));
        for (std::size_t i = 0; i + 1 < rr.elements.size(); i += 2) {
          me.reaped += static_cast<std::uint64_t>(rr.elements[i + 1].integer);
          me.log->warn(
              "consumer {}: worker {} sent no heartbeat for {} ms: {} of its tasks went back to "
              "their queues",
              me.name, rr.elements[i].str, me.opt.dead_after.count(), rr.elements[i + 1].integer);
        }
      }
    } catch (const std::exception& e) {
      failed = e.what();
    }
    if (!failed.empty()) {
      me.note_lost(failed);
      if (me.hb_conn) me.hb_conn->close();
    }
  }
  // Leaving: hand back what is still ours and leave the cluster. A join
  // still on its way would register this worker again after it left (and
  // keep a connection open): let it end first.
  co_await me.connection_settled();
  try {
    if (!me.hb_conn || !me.hb_conn->is_open()) me.hb_conn = co_await me.open("heartbeat");
    Reply r =
        co_await me.hb_conn->call(cmd("FCALL", "atask_unregister", "2", std::string(detail::workers_key),
                                      detail::worker_key(me.name), me.name));
    if (r.integer > 0)
      me.log->warn("consumer {}: {} unfinished tasks went back to their queues", me.name, r.integer);
  } catch (const std::exception& e) {
    me.log->warn(
        "consumer {}: could not leave the cluster cleanly ({}); the reaper hands back its tasks "
        "after {} ms",
        me.name, e.what(), me.opt.dead_after.count());
  }
  // Let the connections go here, on the io_context: the Impl may be
  // destroyed on another thread.
  me.hb_conn.reset();
  if (me.flights.empty()) me.cmd_conn.reset();
  me.fetch_conn.reset();
  me.log->info("consumer {}: stopped ({} received, {} succeeded, {} failed)", me.name, me.received.load(),
               me.succeeded.load(), me.failed.load());
  me.loop_ended();
}

}  // namespace atask::distributed
