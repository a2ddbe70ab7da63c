// distributed::Consumer: the public class, its options, start and the staged stop.

#include "distributed/consumer/impl.hpp"

#include "core/child_context.hpp"
#include "distributed/keys.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <cxxabi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <typeinfo>

// GCC 12 warns about Asio's coroutine frames, whose operator new and
// delete are a matched pair of its own (GCC bug 109224, a false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace atask::distributed {

namespace {

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (!d) return name;
  std::string out = d;
  std::free(d);
  return out;
}

}  // namespace

std::string Consumer::Impl::host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  return buf;
}

std::pair<std::string, std::string> Consumer::Impl::error_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const ChildError& x) {
    return {x.type(), x.message()};
  } catch (const std::exception& x) {
    return {demangle(typeid(x).name()), x.what()};
  } catch (...) {
    return {"unknown", "a non-standard exception"};
  }
}

bool Consumer::Impl::is_canceled(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const TaskCanceled&) {
    return true;
  } catch (...) {
    return false;
  }
}

asio::awaitable<void> Consumer::Impl::sleep_for(milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  boost::system::error_code ec;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

std::string Consumer::Impl::join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (auto& x : v) out += (out.empty() ? "" : sep) + x;
  return out;
}

Consumer::Impl::Impl(Supervisor& s, const TaskRegistry& t, ConsumerOptions o)
    : sv(s), tasks(t), opt(std::move(o)), endpoint(redis::parse_url(opt.broker)), log(s.logger_ptr()) {
  if (opt.queues.empty()) throw OptionsError("distributed::Consumer - no queue to consume (queues is empty)");
  for (auto& q : opt.queues) detail::check_queue_name("distributed::Consumer", q);
  for (auto& [q, l] : opt.queue_limits) {
    detail::check_queue_name("distributed::Consumer", q);
    l.check("distributed::Consumer - queue_limits");
  }
  const auto positive = [](milliseconds d, const char* what) {
    if (d.count() <= 0)
      throw OptionsError(std::string("distributed::Consumer - ") + what + " must be positive");
  };
  positive(opt.heartbeat, "heartbeat");
  positive(opt.dead_after, "dead_after");
  positive(opt.reap_every, "reap_every");
  positive(opt.block, "block");
  positive(opt.connect_timeout, "connect_timeout");
  positive(opt.max_backoff, "max_backoff");
  if (opt.stop_timeout.count() < 0) throw OptionsError("distributed::Consumer - stop_timeout is negative");
  if (opt.time_limit.count() < 0) throw OptionsError("distributed::Consumer - time_limit is negative");
  if (opt.refill_wait.count() < 0) throw OptionsError("distributed::Consumer - refill_wait is negative");
  for (const auto& [k, v] : opt.labels)
    if (k.empty() ||
        k.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
            std::string::npos)
      throw OptionsError("distributed::Consumer - the label name '" + k +
                         "' may hold only letters, digits and _ . -");
  if (opt.dead_after <= opt.heartbeat)
    throw OptionsError("distributed::Consumer - dead_after (" + std::to_string(opt.dead_after.count()) +
                       " ms) must be longer than heartbeat (" + std::to_string(opt.heartbeat.count()) +
                       " ms): a live worker would be taken for dead");
  name = opt.name.empty()
             ? host_name() + ":" + std::to_string(::getpid()) + ":" + detail::random_id().substr(0, 8)
             : opt.name;
  if (name.find_first_of(" \t\r\n") != std::string::npos)
    throw OptionsError("distributed::Consumer - the name '" + name + "' has white space");
  inbox = detail::inbox_key(name);
  // Higher priorities first; within one, the queues in the given order.
  for (auto it = all_priorities.rbegin(); it != all_priorities.rend(); ++it)
    for (auto& q : opt.queues) streams.push_back({q, detail::stream_key(q, *it), detail::dead_key(q), *it});
}

void Consumer::Impl::start() {
  if (opt.prefetch == 0)
    opt.prefetch = 4 * static_cast<std::size_t>(std::max(1, sv.info().pool.limits.pool_size));
  // Refills wait for a quarter of the slots, or refill_wait after one
  // freed: one read for several tasks, not a pass over every stream for
  // each task that ends, and no task waiting in its stream for long while a
  // slot is free.
  refill_at = std::max<std::size_t>(1, opt.prefetch / 4);
  auto& io = sv.io_context();
  slot = std::make_unique<asio::steady_timer>(io);
  hb_wake = std::make_unique<asio::steady_timer>(io);
  sub_wake = std::make_unique<asio::steady_timer>(io);
  due_wake = std::make_unique<asio::steady_timer>(io);
  connect_done = std::make_unique<asio::steady_timer>(io, asio::steady_timer::time_point::max());
  running_loops = 4;
  asio::co_spawn(io, delay_loop(shared_from_this()), asio::detached);
  asio::co_spawn(io, fetch_loop(shared_from_this()), asio::detached);
  asio::co_spawn(io, liveness_loop(shared_from_this()), asio::detached);
  asio::co_spawn(io, cancel_loop(shared_from_this()), asio::detached);
  log->info("consumer {}: consuming {} from {} (prefetch {})", name, join(opt.queues, ","),
            endpoint.to_string(), opt.prefetch);
}

void Consumer::Impl::stop() {
  auto& io = sv.io_context();
  {
    std::unique_lock lk(m);
    if (stop_called) {  // a second caller waits for the first one's stop
      cv.wait_for(lk, 2 * opt.stop_timeout + opt.connect_timeout + milliseconds(10'000),
                  [&] { return finished; });
      return;
    }
    stop_called = true;
    if (!started) {
      finished = true;
      return;
    }
    if (io.get_executor().running_in_this_thread())
      throw LifecycleError("distributed::Consumer::stop() - called on the supervisor's io_context thread");
  }
  asio::post(io, [self = shared_from_this()] {
    self->stopping = true;
    if (self->fetch_conn && self->blocking_read) self->fetch_conn->close();
    if (self->slot) self->slot->cancel();
    if (self->due_wake) self->due_wake->cancel();
  });
  std::unique_lock lk(m);
  if (!cv.wait_for(lk, opt.stop_timeout, [&] { return in_flight == 0; })) {
    lk.unlock();
    log->warn("consumer {}: {} tasks still running after stop_timeout ({} ms): asking them to stop", name,
              in_flight.load(), opt.stop_timeout.count());
    asio::post(io, [self = shared_from_this()] {
      for (auto& [e, f] : self->flights) {
        f.stopping = true;
        if (f.handle.valid()) (void)f.handle.cancel();
      }
    });
    lk.lock();
    if (!cv.wait_for(lk, std::max(opt.stop_timeout, milliseconds(1000)), [&] { return in_flight == 0; }))
      log->warn("consumer {}: {} tasks ignore their stop request; they go back to their queues now", name,
                in_flight.load());
  }
  leaving = true;
  lk.unlock();
  asio::post(io, [self = shared_from_this()] {
    if (self->slot) self->slot->cancel();
    if (self->hb_wake) self->hb_wake->cancel();
    if (self->sub_wake) self->sub_wake->cancel();
  });
  lk.lock();
  // The liveness loop unregisters (handing back what is left) and ends.
  cv.wait_for(lk, opt.connect_timeout + milliseconds(5000), [&] { return finished; });
}

void Consumer::Impl::loop_ended() {
  if (running_loops == 1 && flights.empty()) {
    // The last loop out: whatever a loop opened on its way out goes now
    // (an open connection keeps the supervisor's io_context running).
    for (auto* c : {&fetch_conn, &cmd_conn, &hb_conn, &sub_conn}) {
      if (*c) (*c)->close();
      c->reset();
    }
  }
  {
    std::lock_guard lk(m);
    if (--running_loops == 0) finished = true;
  }
  cv.notify_all();
}
Consumer::Consumer(Supervisor& sv, const TaskRegistry& tasks, ConsumerOptions options)
    : impl_(std::make_shared<Impl>(sv, tasks, std::move(options))) {
  // What the tasks running in the process pool's children report comes back
  // through the pool (one sink for every consumer of this process).
  atask::detail::child_progress_sink.store(&Impl::report_from_child, std::memory_order_release);
  std::weak_ptr<Impl> weak = impl_;
  try {
    sv.add_step({.name = "consumer:" + impl_->name,
                 .depends_on = {"pool"},
                 .start =
                     [weak](Supervisor&) {
                       if (auto i = weak.lock()) {
                         {
                           std::lock_guard lk(i->m);
                           if (i->stop_called) return;
                           i->started = true;
                         }
                         i->start();
                       }
                     },
                 .stop =
                     [weak](Supervisor&) {
                       if (auto i = weak.lock()) i->stop();
                     }});
  } catch (const LifecycleError& e) {
    throw LifecycleError(std::string("distributed::Consumer - create it before Supervisor::start(): ") +
                         e.what());
  }
}

Consumer::~Consumer() {
  try {
    stop();
  } catch (const std::exception& e) {
    impl_->log->error("consumer {}: {}", impl_->name, e.what());
  }
}

void Consumer::stop() {
  impl_->stop();
}

const std::string& Consumer::name() const noexcept {
  return impl_->name;
}

ConsumerInfo Consumer::info() const {
  auto& i = *impl_;
  return {i.name,           i.connected.load(), i.in_flight.load(),     i.received.load(), i.succeeded.load(),
          i.failed.load(),  i.canceled.load(),  i.dead_lettered.load(), i.stale.load(),    i.reaped.load(),
          i.retried.load(), i.handed.load(),    i.clock_steps.load()};
}

}  // namespace atask::distributed
