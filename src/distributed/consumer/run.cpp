// Running one task the consumer fetched: atask_start, the local submission,
// its time limit, the outcome (atask_complete, retry or dead letter) and
// the progress it reports on the way.

#include "distributed/consumer/impl.hpp"

#include "core/child_context.hpp"

#include "distributed/keys.hpp"
#include "distributed/retry_json.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

asio::awaitable<void> Consumer::Impl::run_one(std::shared_ptr<Impl> self, std::string key) {
  auto& me = *self;
  const auto until_stopped = [&me] { return !me.leaving; };
  Flight* fl = &me.flights[key];
  const std::string entry = fl->entry;
  const Stream& s = *fl->stream;
  const std::string id = fl->id;
  std::string outcome, a, b, c;  // for atask_complete
  try {
    if (id.empty()) {
      co_await me.call(cmd("FCALL", "atask_reject", "2", s.key, s.dead, entry,
                           "the message has no task id (field 'id'); it was not sent by an atask client"),
                       until_stopped);
      ++me.dead_lettered;
      me.log->error("consumer {}: entry {} of {} has no task id: moved to {}", me.name, entry, s.key, s.dead);
      me.done_with(key);
      co_return;
    }
    const std::string hash = detail::task_key(id);
    // Started already by atask_idle or a hand-off (lua/40_handoff.lua).
    Reply r;
    if (fl->started) {
      r = std::move(*fl->started);
      fl->started.reset();
    } else {
      r = co_await me.call(cmd("FCALL", "atask_start", "3", hash, s.key, s.dead, entry, me.name, id),
                           until_stopped);
    }
    fl = &me.flights[key];  // (the map may have changed meanwhile; the node did not)
    const std::string what = r.elements.empty() ? "" : r.elements[0].str;
    me.log->debug("consumer {}: task {} entry {}: start says {}", me.name, id, entry, what);
    if (what == "dead") {
      ++me.dead_lettered;
      me.log->error("consumer {}: task {} was delivered too many times without finishing: moved to {}",
                    me.name, id, s.dead);
    }
    if (what != "run" || r.elements.size() != 7) {
      me.done_with(key);
      co_return;
    }
    const std::string task = r.elements[1].str;
    fl->attempt = r.elements[3].str;
    long long limit = std::atoll(r.elements[4].str.c_str());
    const auto known = me.tasks.find(task);
    if (limit == 0 && known) limit = known->options.time_limit.count();  // the task's default
    if (limit == 0) limit = me.opt.time_limit.count();                   // the worker's default
    if (r.elements[5].str == "1" || fl->cancel_asked) {
      outcome = "canceled", a = "atask::TaskCanceled", b = "canceled before it started";
    } else if (!known) {
      outcome = "dead", a = "atask::NotFoundError",
      b = "no task named '" + task + "' is registered on worker " + me.name;
    } else {
      boost::system::error_code ec;
      json::value args = json::parse(r.elements[2].str, ec);
      if (ec || !args.is_array()) {
        outcome = "dead", a = "atask::MalformedMessage",
        b = "the arguments of task '" + task + "' are not a JSON array";
      } else if (me.stopping) {
        // Taken while stopping: not run. It goes back unstarted now (or,
        // if that fails, with the rest when this worker leaves).
        try {
          co_await me.call(cmd("FCALL", "atask_unstart", "2", hash, s.key, me.name, fl->attempt, entry),
                           [] { return false; });
        } catch (const std::exception&) {
        }
        me.done_with(key);
        co_return;
      } else {
        {
          // Under the reporters' lock: a report_progress() from the task
          // waits until the task is known there.
          std::lock_guard lk(reporters_mutex());
          fl->handle =
              me.tasks.submit(me.sv, task, std::move(args.as_array()), CallOptions{.priority = s.priority});
          fl->local_id = fl->handle.id();
          reporters()[fl->local_id] = {self, key};
        }
        if (limit > 0)
          asio::co_spawn(me.sv.io_context(), time_limit(self, key, milliseconds(limit)), asio::detached);
        std::exception_ptr err;
        json::value result;
        try {
          result = co_await fl->handle.async_get(asio::use_awaitable);
        } catch (...) {
          err = std::current_exception();
        }
        fl = &me.flights[key];
        if (fl->timed_out) {
          // Past its limit, however it ended: a task that heeds the stop
          // request and returns what it has done so far did not finish in
          // time either.
          outcome = "failed", a = "atask::TimeoutError",
          b = "time limit of " + std::to_string(limit) + " ms exceeded";
        } else if (!err) {
          outcome = "succeeded", a = json::serialize(result);
        } else if (is_canceled(err) && !fl->user_canceled) {
          // Stopped by our own shutdown (or the supervisor's): not the
          // task's outcome. It goes back to its queue.
          me.done_with(key);
          co_return;
        } else if (is_canceled(err)) {
          outcome = "canceled", a = "atask::TaskCanceled", b = "canceled while running";
        } else {
          auto [type, message] = error_of(err);
          outcome = "failed", a = type, b = message;
        }
        if (outcome == "failed") {
          // Retried? The send's policy, else the task's default here.
          RetryPolicy policy = known->options.retry;
          if (!r.elements[6].str.empty()) {
            try {
              policy = detail::retry_from_json(r.elements[6].str);
            } catch (const std::exception& e) {
              me.log->warn("consumer {}: task {}: its retry policy is unreadable ({}): not retried", me.name,
                           id, e.what());
              policy = RetryPolicy{};
            }
          }
          const auto n = static_cast<unsigned>(std::strtoul(me.flights[key].attempt.c_str(), nullptr, 10));
          if (policy.max_attempts > 1 && policy.retries(a)) {
            if (n < policy.max_attempts) {
              outcome = "retry";
              c = std::to_string(policy.delay_before(n, me.unit()).count());
            } else {
              outcome = "dead";  // every attempt failed: the dead letters, with the history
            }
          }
        }
      }
    }
    me.log->debug("consumer {}: task {} entry {}: {}", me.name, id, entry, outcome);
    Reply done = co_await me.call(cmd("FCALL", "atask_complete", "3", hash, s.key, s.dead, entry, me.name,
                                      me.flights[key].attempt, outcome, a, b, c),
                                  until_stopped);
    if (done.str == "stale") {
      ++me.stale;
      me.log->warn(
          "consumer {}: task {} finished here after it was handed to another worker (this worker "
          "was presumed dead); its outcome was not stored",
          me.name, id);
    } else if (outcome == "succeeded") {
      ++me.succeeded;
    } else if (outcome == "failed") {
      ++me.failed;
    } else if (outcome == "canceled") {
      ++me.canceled;
    } else if (outcome == "retry") {
      ++me.retried;
      me.log->info("consumer {}: task {} attempt {} failed ({}: {}); retry in {} ms", me.name, id,
                   me.flights[key].attempt, a, b, c);
    } else if (outcome == "dead") {
      ++me.dead_lettered;
      me.log->error("consumer {}: task {}: {}: moved to {}", me.name, id, b, s.dead);
    }
  } catch (const std::exception& e) {
    // Redis unreachable until the stop: the entry stays pending under this
    // worker's name; unregister or a reaper hands it back.
    me.log->warn("consumer {}: task {} (entry {}): {}", me.name, id, entry, e.what());
  }
  me.done_with(key);
}

asio::awaitable<void> Consumer::Impl::time_limit(std::shared_ptr<Impl> self, std::string entry,
                                                 milliseconds d) {
  co_await sleep_for(d);
  auto it = self->flights.find(entry);
  if (it == self->flights.end() || !it->second.handle.valid() || it->second.handle.done()) co_return;
  it->second.timed_out = true;
  (void)it->second.handle.cancel();
}

void Consumer::Impl::done_with(const std::string& entry) {
  if (auto it = flights.find(entry); it != flights.end() && it->second.local_id != 0) {
    std::lock_guard lk(reporters_mutex());
    reporters().erase(it->second.local_id);
  }
  flights.erase(entry);
  // The last late outcome after leaving: nothing may keep the
  // supervisor's io_context busy now.
  if (leaving && flights.empty()) cmd_conn.reset();
  {
    std::lock_guard lk(m);
    --in_flight;
  }
  cv.notify_all();
  if (slot) slot->cancel();
}

void Consumer::Impl::send_progress(std::string entry, double fraction, std::string message) {
  asio::post(sv.io_context(), [self = shared_from_this(), entry = std::move(entry), fraction,
                               message = std::move(message)]() mutable {
    auto it = self->flights.find(entry);
    if (it == self->flights.end()) return;
    it->second.progress.emplace(fraction, std::move(message));
    if (it->second.progress_sending) return;
    it->second.progress_sending = true;
    asio::co_spawn(self->sv.io_context(), progress_loop(self, entry), asio::detached);
  });
}

asio::awaitable<void> Consumer::Impl::progress_loop(std::shared_ptr<Impl> self, std::string entry) {
  for (;;) {
    auto it = self->flights.find(entry);
    if (it == self->flights.end()) co_return;
    if (!it->second.progress) {
      it->second.progress_sending = false;
      co_return;
    }
    auto [fraction, message] = std::move(*it->second.progress);
    it->second.progress.reset();
    Connection::Command c = cmd("FCALL", "atask_progress", "1", detail::task_key(it->second.id), self->name,
                                it->second.attempt, fmt::format("{}", fraction), std::move(message));
    try {
      co_await self->call(std::move(c), [] { return false; });
    } catch (const std::exception&) {
      // Progress is best effort: the outcome is what must arrive.
    }
  }
}

bool Consumer::Impl::report(std::uint64_t task_id, double fraction, std::string_view message) {
  Reporter r;
  {
    std::lock_guard lk(reporters_mutex());
    auto it = reporters().find(task_id);
    if (it == reporters().end()) return false;
    r = it->second;
  }
  auto impl = r.impl.lock();
  if (!impl) return false;
  impl->send_progress(std::move(r.entry), std::clamp(fraction, 0.0, 1.0), std::string(message));
  return true;
}

bool report_progress(double fraction, std::string_view message) {
  // In a child of the process pool: to the parent, whose pool hands it to
  // report() above (through atask::detail::child_progress_sink).
  if (auto write = atask::detail::child::write_progress)
    return write(std::clamp(fraction, 0.0, 1.0), message);
  const std::uint64_t id = this_task::id();
  return id != 0 && Consumer::Impl::report(id, fraction, message);
}

}  // namespace atask::distributed
