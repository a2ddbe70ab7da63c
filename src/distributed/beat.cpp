// Beat: fires scheduled tasks; one leader at a time, each tick once.

#include <atask/distributed/beat.hpp>
#include <atask/supervisor/supervisor.hpp>
#include <atask/timers/cron.hpp>

#include "distributed/keys.hpp"
#include "distributed/redis/connection.hpp"
#include "distributed/retry_json.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>

namespace atask::distributed {

namespace asio = boost::asio;
namespace json = boost::json;
using redis::cmd;
using redis::Connection;
using redis::Reply;
using std::chrono::milliseconds;
using sys_ms = std::chrono::time_point<std::chrono::system_clock, milliseconds>;

namespace {

constexpr std::string_view beat_key = "atask:beat";
constexpr std::string_view leader_key = "atask:beat:leader";

std::int64_t to_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}
std::chrono::system_clock::time_point from_ms(std::int64_t ms) {
  return std::chrono::system_clock::time_point(milliseconds(ms));
}

}  // namespace

struct Beat::Impl : std::enable_shared_from_this<Beat::Impl> {
  struct Schedule {
    BeatEntry entry;
    std::optional<CronSchedule> cron;
    std::string stream, delayed, retry;
    std::chrono::system_clock::time_point next(std::chrono::system_clock::time_point after) const {
      if (cron) return cron->next_after(after);
      return after + entry.every;
    }
  };

  Impl(Supervisor& s, std::vector<BeatEntry> entries, BeatOptions o)
      : sv(s), opt(std::move(o)), endpoint(redis::parse_url(opt.broker)), log(s.logger_ptr()) {
    const auto bad = [](const std::string& why) { throw OptionsError("distributed::Beat - " + why); };
    if (opt.lease.count() <= 0) bad("lease must be positive");
    if (opt.grace.count() < 0) bad("grace is negative");
    if (opt.name.empty())
      opt.name = "beat:" + std::to_string(::getpid()) + ":" + detail::random_id().substr(0, 8);
    std::set<std::string> names;
    for (auto& e : entries) {
      if (e.name.empty()) bad("an entry has no name");
      if (e.name.find_first_of(" \t\r\n") != std::string::npos)
        bad("the entry name '" + e.name + "' has white space");
      if (!names.insert(e.name).second) bad("the entry name '" + e.name + "' is given twice");
      if (e.task.empty()) bad("entry '" + e.name + "' has no task");
      if (e.cron.empty() == (e.every.count() <= 0))
        bad("entry '" + e.name + "' needs one of cron and every (a positive interval), not " +
            (e.cron.empty() ? "neither" : "both"));
      Schedule sc{e, std::nullopt, "", "", ""};
      if (!e.cron.empty()) sc.cron = CronSchedule::parse(e.cron, e.time_zone);
      const std::string queue = e.send.queue.value_or("default");
      detail::check_queue_name("distributed::Beat", queue);
      sc.stream = detail::stream_key(queue, e.send.priority.value_or(Priority::normal));
      sc.delayed = detail::delayed_key(queue);
      if (e.send.retry) {
        e.send.retry->check("distributed::Beat");
        sc.retry = detail::retry_to_json(*e.send.retry);
      }
      schedules.push_back(std::move(sc));
    }
  }

  void start() {
    wake = std::make_unique<asio::steady_timer>(sv.io_context());
    {
      std::lock_guard lk(m);
      running = true;
    }
    asio::co_spawn(sv.io_context(), loop(shared_from_this()), asio::detached);
  }

  void stop() {
    std::unique_lock lk(m);
    if (!running || stop_called) {
      stop_called = true;
      cv.wait_for(lk, opt.connect_timeout + milliseconds(5000), [&] { return !running; });
      return;
    }
    stop_called = true;
    lk.unlock();
    asio::post(sv.io_context(), [self = shared_from_this()] {
      self->stopping = true;
      if (self->wake) self->wake->cancel();
    });
    lk.lock();
    cv.wait_for(lk, opt.connect_timeout + milliseconds(5000), [&] { return !running; });
  }

  // The enqueue arguments of one tick (lua/90_beat.lua, atask_beat_fire).
  Connection::Command fire_command(const Schedule& s, std::int64_t tick, bool fire) const {
    const auto& e = s.entry;
    const std::string id = "beat:" + e.name + ":" + std::to_string(tick);
    return cmd("FCALL", "atask_beat_fire", "4", std::string(beat_key), detail::task_key(id), s.stream,
               s.delayed, e.name, std::to_string(tick), fire ? "fire" : "mark", id, e.task,
               json::serialize(e.args), e.send.queue.value_or("default"),
               std::string(to_string(e.send.priority.value_or(Priority::normal))), "",
               std::to_string(e.send.result_ttl.count()), std::to_string(e.send.max_deliveries),
               std::to_string(e.send.time_limit.count()), "0", "0", s.retry);
  }

  // One pass as the leader: fires what is due; returns when to look again.
  asio::awaitable<std::chrono::system_clock::time_point> fire_due(Connection& c) {
    const auto now = std::chrono::system_clock::now();
    std::vector<Connection::Command> reads;
    for (auto& s : schedules) reads.push_back(cmd("HGET", std::string(beat_key), s.entry.name));
    auto lasts = co_await c.pipeline(std::move(reads));
    auto soonest = now + opt.lease / 3;
    for (std::size_t i = 0; i < schedules.size(); ++i) {
      const auto& s = schedules[i];
      if (lasts[i].is_nil()) {
        // First sight of this schedule: its ticks count from now.
        Reply r =
            co_await c.call(cmd("HSETNX", std::string(beat_key), s.entry.name, std::to_string(to_ms(now))));
        soonest = std::min(soonest, s.next(now));
        (void)r;
        continue;
      }
      const auto last = from_ms(std::atoll(lasts[i].str.c_str()));
      std::vector<std::int64_t> due;
      for (auto t = s.next(last); t <= now && due.size() < 1000; t = s.next(t)) due.push_back(to_ms(t));
      if (!due.empty()) {
        const std::int64_t missed_before = to_ms(now - opt.grace);
        std::vector<Connection::Command> cs;
        std::size_t passed = 0;
        for (std::size_t k = 0; k < due.size(); ++k) {
          const bool missed = due[k] < missed_before;
          const bool latest = k + 1 == due.size();
          bool fire = !missed || s.entry.missed == MissedTicks::run_all ||
                      (s.entry.missed == MissedTicks::run_once && latest);
          if (!fire && !latest) {  // passed over: the latest tick (fired or marked) moves the schedule on
            ++passed;
            continue;
          }
          if (!fire) ++passed;
          cs.push_back(fire_command(s, due[k], fire));
        }
        auto rs = co_await c.pipeline(std::move(cs));
        for (auto& r : rs) {
          if (r.is_error() && r.str.find("exists already") == std::string::npos)
            log->warn("beat {}: schedule '{}': {}", opt.name, s.entry.name, r.str);
          else if (!r.is_error() && r.str != "skip" && r.str != "marked")
            ++fired;
        }
        skipped += passed;
        if (passed > 0)
          log->info("beat {}: schedule '{}' missed {} ticks ({}): {} fired", opt.name, s.entry.name,
                    due.size(), to_string(s.entry.missed), due.size() - passed);
      }
      soonest = std::min(soonest, s.next(std::max(now, due.empty() ? last : from_ms(due.back()))));
    }
    co_return soonest;
  }

  static asio::awaitable<void> loop(std::shared_ptr<Impl> self) {
    auto& me = *self;
    std::shared_ptr<Connection> conn;
    auto backoff = milliseconds(50);
    bool said_leader = false;
    while (!me.stopping) {
      auto wait = std::chrono::duration_cast<milliseconds>(me.opt.lease / 3);
      try {
        if (!conn || !conn->is_open()) {
          redis::ConnectOptions co{.timeout = me.opt.connect_timeout, .client_name = "atask-beat"};
          auto ex = co_await asio::this_coro::executor;
          conn = co_await Connection::connect(ex, me.endpoint, std::move(co));
          co_await conn->call(cmd("FUNCTION", "LOAD", "REPLACE", std::string(detail::functions_source())));
        }
        Reply lease = co_await conn->call(cmd("FCALL", "atask_beat_lease", "1", std::string(leader_key),
                                              me.opt.name, std::to_string(me.opt.lease.count())));
        me.leader = lease.integer == 1;
        if (me.leader != said_leader) {
          me.log->info("beat {}: {}", me.opt.name, me.leader ? "leads" : "follows");
          said_leader = me.leader;
        }
        if (me.leader) {
          const auto next = co_await me.fire_due(*conn);
          wait = std::clamp(std::chrono::duration_cast<milliseconds>(next - std::chrono::system_clock::now()),
                            milliseconds(0), std::chrono::duration_cast<milliseconds>(me.opt.lease / 3));
        }
        backoff = milliseconds(50);
      } catch (const std::exception& e) {
        me.log->warn("beat {}: Redis at {}: {}", me.opt.name, me.endpoint.to_string(), e.what());
        if (conn) conn->close();
        me.leader = false;
        wait = backoff;
        backoff = std::min(backoff * 2, milliseconds(2000));
      }
      if (me.stopping) break;
      me.wake->expires_after(wait);
      boost::system::error_code ec;
      co_await me.wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    // Leaving: give the lease up so that another beat leads at once.
    try {
      if (conn && conn->is_open() && me.leader)
        co_await conn->call(cmd("FCALL", "atask_beat_lease", "1", std::string(leader_key), me.opt.name, "0"));
    } catch (const std::exception&) {
    }
    if (conn) conn->close();
    conn.reset();
    me.leader = false;
    {
      std::lock_guard lk(me.m);
      me.running = false;
    }
    me.cv.notify_all();
  }

  Supervisor& sv;
  BeatOptions opt;
  redis::Endpoint endpoint;
  std::shared_ptr<spdlog::logger> log;
  std::vector<Schedule> schedules;
  std::unique_ptr<asio::steady_timer> wake;
  std::atomic<bool> stopping{false}, leader{false};
  std::atomic<std::uint64_t> fired{0}, skipped{0};
  std::mutex m;
  std::condition_variable cv;
  bool running = false, stop_called = false;
};

Beat::Beat(Supervisor& sv, std::vector<BeatEntry> entries, BeatOptions options)
    : impl_(std::make_shared<Impl>(sv, std::move(entries), std::move(options))) {
  std::weak_ptr<Impl> weak = impl_;
  try {
    sv.add_step({.name = "beat:" + impl_->opt.name,
                 .depends_on = {"loop"},
                 .start =
                     [weak](Supervisor&) {
                       if (auto i = weak.lock()) {
                         {
                           std::lock_guard lk(i->m);
                           if (i->stop_called) return;
                         }
                         i->start();
                       }
                     },
                 .stop =
                     [weak](Supervisor&) {
                       if (auto i = weak.lock()) i->stop();
                     }});
  } catch (const LifecycleError& e) {
    throw LifecycleError(std::string("distributed::Beat - create it before Supervisor::start(): ") +
                         e.what());
  }
}

Beat::~Beat() {
  try {
    stop();
  } catch (const std::exception& e) {
    impl_->log->error("beat {}: {}", impl_->opt.name, e.what());
  }
}

void Beat::stop() {
  impl_->stop();
}

BeatInfo Beat::info() const {
  return {impl_->opt.name, impl_->leader.load(), impl_->fired.load(), impl_->skipped.load()};
}

}  // namespace atask::distributed
