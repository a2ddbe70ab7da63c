#include <atask/thread_pool.hpp>

#include <atask/errors.hpp>

#include "detail/platform.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <limits>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace atask {

namespace {

constexpr int unlimited = std::numeric_limits<int>::max();

int sat_add(int a, int b) noexcept { return a > unlimited - b ? unlimited : a + b; }

// Running-task limits for low, normal and high (critical has none).
std::array<int, 3> admission_limits(const PoolLimits& l) noexcept {
  if (l.pool_size > 0) {
    int low = l.pool_size;
    int normal = sat_add(low, l.reserve_normal);
    return {low, normal, sat_add(normal, l.reserve_high)};
  }
  if (l.max_threads > 0) {
    int high = l.max_threads;
    int normal = high - l.reserve_high;
    return {normal - l.reserve_normal, normal, high};
  }
  return {unlimited, unlimited, unlimited};
}

std::string describe_state_for(const char* call, const std::string& name, bool started) {
  return std::string(call) + " - pool '" + name + "' is " + (started ? "stopping or stopped" : "not started");
}

thread_local const void* tls_pool = nullptr;

}  // namespace

void validate(const PoolLimits& l, const char* call) {
  auto fail = [&](const std::string& why) { throw OptionsError(std::string(call) + " - " + why); };
  auto non_negative = [&](int v, const char* what) {
    if (v < 0) fail(std::string(what) + " must be >= 0 (got " + std::to_string(v) + ")");
  };
  non_negative(l.pool_size, "pool_size");
  non_negative(l.reserve_normal, "reserve_normal");
  non_negative(l.reserve_high, "reserve_high");
  non_negative(l.min_threads, "min_threads");
  non_negative(l.max_threads, "max_threads");
  const long reserves = long(l.reserve_normal) + l.reserve_high;
  if (l.max_threads > 0) {
    if (l.pool_size > 0 && l.pool_size + reserves > l.max_threads)
      fail("pool_size + reserve_normal + reserve_high (" + std::to_string(l.pool_size + reserves) +
           ") exceeds max_threads (" + std::to_string(l.max_threads) + ")");
    if (l.pool_size == 0 && reserves >= l.max_threads)
      fail("reserve_normal + reserve_high (" + std::to_string(reserves) +
           ") must be smaller than max_threads (" + std::to_string(l.max_threads) +
           ") so that low tasks get a slot");
    if (l.min_threads > l.max_threads)
      fail("min_threads (" + std::to_string(l.min_threads) + ") exceeds max_threads (" +
           std::to_string(l.max_threads) + ")");
  }
}

struct ThreadPool::Impl : std::enable_shared_from_this<Impl> {
  struct Worker {
    std::condition_variable cv;
    bool woken = false;    // handed work by a submitter (who counted us as searching)
    bool recheck = false;  // limits changed: re-evaluate the idle timeout
    bool exited = false;
    bool in_task = false;
    std::thread thread;
    int number = 0;
  };
  enum class State { created, running, closing, stopped };

  PoolOptions opt;
  std::shared_ptr<spdlog::logger> log;

  mutable std::mutex m;
  std::array<detail::NodeList, priority_count> queues;
  std::array<int, priority_count> queued{}, running{};
  int queued_total = 0, running_total = 0;
  PoolLimits limits;
  std::array<int, 3> limit{};
  int threads = 0;
  int searching = 0;  // awake threads without a task (spinning, or woken and on their way)
  int next_number = 0;
  std::uint64_t completed = 0;
  std::vector<Worker*> sleepers;  // LIFO: the most recently idle thread is cache-warm
  std::list<std::unique_ptr<Worker>> workers;
  State state = State::created;
  bool joining = false;  // threads without work exit
  mutable std::condition_variable idle_cv;
  mutable int idle_waiters = 0;
  std::condition_variable exit_cv;

  // Spinning threads watch this instead of taking the mutex.
  std::atomic<bool> work_hint{false};

  explicit Impl(PoolOptions o) : opt(std::move(o)), log(opt.logger ? opt.logger : detail::default_logger()) {
    validate(opt.limits, "ThreadPool::ThreadPool()");
    if (opt.idle_timeout.count() < 0) throw OptionsError("ThreadPool::ThreadPool() - idle_timeout must be >= 0");
    if (opt.spin.count() < 0) throw OptionsError("ThreadPool::ThreadPool() - spin must be >= 0");
    if (opt.prespawn && opt.limits.min_threads == 0)
      throw OptionsError("ThreadPool::ThreadPool() - prespawn needs min_threads > 0 (the threads it starts)");
    limits = opt.limits;
    limit = admission_limits(limits);
  }

  // -- under m ---------------------------------------------------------------
  bool admissible_locked() const noexcept {
    for (int i = int(priority_count) - 1; i >= 0; --i) {
      if (queues[i].empty()) continue;
      return i == int(Priority::critical) || running_total < limit[i];
    }
    return false;
  }

  void update_hint_locked() noexcept { work_hint.store(admissible_locked(), std::memory_order_relaxed); }

  detail::PoolNode* take_locked() noexcept {
    for (int i = int(priority_count) - 1; i >= 0; --i) {
      if (queues[i].empty()) continue;
      // The highest waiting priority decides: lower ones wait behind it.
      if (i != int(Priority::critical) && running_total >= limit[i]) return nullptr;
      detail::PoolNode* n = queues[i].pop_front();
      --queued[i];
      --queued_total;
      ++running[i];
      ++running_total;
      return n;
    }
    return nullptr;
  }

  // Keeps the invariant: while an admissible task waits, some thread without
  // a task is awake to take it. Everything else chains from that thread.
  void ensure_searcher_locked() {
    if (searching > 0 || !admissible_locked()) return;
    if (!sleepers.empty()) {
      Worker* w = sleepers.back();
      sleepers.pop_back();
      w->woken = true;
      ++searching;
      w->cv.notify_one();
      return;
    }
    // Every thread runs a task, so running_total == threads: an admissible
    // task means the limit allows one more thread (or it is critical).
    spawn_locked();
  }

  void spawn_locked() {
    auto w = std::make_unique<Worker>();
    w->number = ++next_number;
    Worker* raw = w.get();
    workers.push_back(std::move(w));
    ++threads;
    ++searching;
    try {
      raw->thread = std::thread([self = shared_from_this(), raw] { self->main(raw); });
    } catch (const std::exception& e) {
      --threads;
      --searching;
      workers.pop_back();
      log->critical("{}: cannot start a pool thread: {}", opt.name, e.what());
    }
  }

  void notify_idle_locked() const {
    if (idle_waiters > 0 && running_total == 0 && queued_total == 0) idle_cv.notify_all();
  }

  std::vector<std::unique_ptr<Worker>> collect_exited_locked() {
    std::vector<std::unique_ptr<Worker>> out;
    for (auto it = workers.begin(); it != workers.end();) {
      if ((*it)->exited) {
        out.push_back(std::move(*it));
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  static void join_all(std::vector<std::unique_ptr<Worker>>& ws) {
    for (auto& w : ws)
      if (w->thread.joinable()) w->thread.join();
  }

  // -- threads ---------------------------------------------------------------
  void report(std::exception_ptr e) noexcept {
    try {
      if (opt.on_error) {
        opt.on_error(e);
        return;
      }
    } catch (...) {
      e = std::current_exception();
      log->error("{}: on_error handler threw: {}", opt.name, detail::describe(e));
      return;
    }
    log->error("{}: a posted task threw: {}", opt.name, detail::describe(e));
  }

  void spin() noexcept {
    const auto until = std::chrono::steady_clock::now() + opt.spin;
    while (!work_hint.load(std::memory_order_relaxed)) {
      for (int i = 0; i < 32; ++i) detail::cpu_relax();
      if (std::chrono::steady_clock::now() >= until) return;
    }
  }

  void main(Worker* w) {
    tls_pool = this;
    detail::set_thread_name(opt.name + "-" + std::to_string(w->number));
    std::unique_lock lk(m);
    bool spun = false;
    // Invariant at the top of the loop: this thread is counted in `searching`.
    for (;;) {
      if (detail::PoolNode* n = take_locked()) {
        --searching;
        spun = false;
        w->in_task = true;
        ensure_searcher_locked();
        update_hint_locked();
        lk.unlock();
        const auto p = index(n->priority());
        try {
          n->run();
        } catch (...) {
          report(std::current_exception());
        }
        n->release();
        lk.lock();
        w->in_task = false;
        --running[p];
        --running_total;
        ++completed;
        ++searching;
        update_hint_locked();
        notify_idle_locked();
        continue;
      }
      if (joining) break;
      if (!spun && opt.spin.count() > 0) {
        spun = true;
        lk.unlock();
        spin();
        lk.lock();
        continue;
      }
      spun = false;
      --searching;
      sleepers.push_back(w);
      w->woken = false;
      auto wake = [&] { return w->woken || w->recheck || joining; };
      if (threads <= limits.min_threads) {
        w->cv.wait(lk, wake);
      } else if (!w->cv.wait_for(lk, opt.idle_timeout, wake) && threads > limits.min_threads) {
        std::erase(sleepers, w);
        ++searching;
        break;  // idle too long: this thread is surplus
      }
      if (!w->woken) {  // recheck or joining: not handed work, so count ourselves
        std::erase(sleepers, w);
        ++searching;
      }
      w->woken = false;
      w->recheck = false;
    }
    --searching;
    --threads;
    w->exited = true;
    exit_cv.notify_all();
    tls_pool = nullptr;
  }
};

ThreadPool::ThreadPool(PoolOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

ThreadPool::~ThreadPool() {
  if (!impl_) return;
  if (on_pool_thread()) {
    impl_->log->error("{}: ThreadPool destroyed from one of its own threads; abandoning its threads",
                      impl_->opt.name);
    close(true);
    abandon();
    return;
  }
  stop(true);
}

void ThreadPool::start() {
  auto& d = *impl_;
  std::unique_lock lk(d.m);
  if (d.state != Impl::State::created)
    throw LifecycleError("ThreadPool::start() - pool '" + d.opt.name + "' was already started");
  d.state = Impl::State::running;
  if (d.opt.prespawn)
    while (d.threads < d.limits.min_threads) d.spawn_locked();
}

void ThreadPool::enqueue(detail::PoolNode* node) {
  auto& d = *impl_;
  std::unique_lock lk(d.m);
  if (d.state != Impl::State::running) {
    bool started = d.state != Impl::State::created;
    lk.unlock();
    node->discard();
    node->release();
    throw LifecycleError(describe_state_for("ThreadPool::enqueue()", d.opt.name, started));
  }
  const auto p = index(node->priority());
  d.queues[p].push_back(node);
  ++d.queued[p];
  ++d.queued_total;
  d.ensure_searcher_locked();
  d.update_hint_locked();
  if (d.workers.size() > std::size_t(d.threads)) {  // some threads exited: join them off the lock
    auto exited = d.collect_exited_locked();
    lk.unlock();
    Impl::join_all(exited);
  }
}

bool ThreadPool::remove(detail::PoolNode* node) noexcept {
  auto& d = *impl_;
  {
    std::lock_guard lk(d.m);
    const auto p = index(node->priority());
    if (!d.queues[p].remove(node)) return false;
    --d.queued[p];
    --d.queued_total;
    d.update_hint_locked();
    d.notify_idle_locked();
  }
  node->release();
  return true;
}

void ThreadPool::resize(const PoolLimits& limits) {
  validate(limits, "ThreadPool::resize()");
  auto& d = *impl_;
  std::lock_guard lk(d.m);
  d.limits = limits;
  d.limit = admission_limits(limits);
  for (auto* w : d.sleepers) {
    w->recheck = true;
    w->cv.notify_one();
  }
  // The rechecking sleepers count as searching again only once they run;
  // make sure newly admissible tasks have a thread right now.
  d.ensure_searcher_locked();
  d.update_hint_locked();
}

PoolInfo ThreadPool::info() const {
  auto& d = *impl_;
  std::lock_guard lk(d.m);
  PoolInfo i;
  i.limits = d.limits;
  i.threads = d.threads;
  i.idle_threads = d.threads - d.running_total;
  i.running = d.running;
  i.queued = d.queued;
  i.running_total = d.running_total;
  i.queued_total = d.queued_total;
  i.completed_total = d.completed;
  return i;
}

void ThreadPool::close(bool cancel_queued) {
  auto& d = *impl_;
  std::vector<detail::PoolNode*> dropped;
  {
    std::lock_guard lk(d.m);
    if (d.state == Impl::State::running || d.state == Impl::State::created) d.state = Impl::State::closing;
    if (cancel_queued) {
      for (auto& q : d.queues)
        while (auto* n = q.pop_front()) dropped.push_back(n);
      d.queued.fill(0);
      d.queued_total = 0;
      d.update_hint_locked();
      d.notify_idle_locked();
    }
  }
  for (auto* n : dropped) {
    n->discard();
    n->release();
  }
}

bool ThreadPool::wait_idle(std::chrono::steady_clock::time_point deadline) const {
  auto& d = *impl_;
  std::unique_lock lk(d.m);
  ++d.idle_waiters;
  bool ok = d.idle_cv.wait_until(lk, deadline, [&] { return d.running_total == 0 && d.queued_total == 0; });
  --d.idle_waiters;
  return ok;
}

void ThreadPool::wait_idle() const {
  auto& d = *impl_;
  std::unique_lock lk(d.m);
  ++d.idle_waiters;
  d.idle_cv.wait(lk, [&] { return d.running_total == 0 && d.queued_total == 0; });
  --d.idle_waiters;
}

void ThreadPool::stop(bool cancel_queued) {
  if (on_pool_thread())
    throw LifecycleError("ThreadPool::stop() - called from one of the pool's own threads; it would wait for itself");
  auto& d = *impl_;
  close(cancel_queued);
  wait_idle();
  std::vector<std::unique_ptr<Impl::Worker>> all;
  {
    std::unique_lock lk(d.m);
    if (d.state == Impl::State::stopped && d.workers.empty()) return;
    d.state = Impl::State::stopped;
    d.joining = true;
    for (auto* w : d.sleepers) w->cv.notify_one();
    d.exit_cv.wait(lk, [&] { return d.threads == 0; });
    all.assign(std::make_move_iterator(d.workers.begin()), std::make_move_iterator(d.workers.end()));
    d.workers.clear();
  }
  Impl::join_all(all);
}

int ThreadPool::abandon() noexcept {
  auto& d = *impl_;
  std::vector<std::unique_ptr<Impl::Worker>> done;
  int left = 0;
  {
    std::lock_guard lk(d.m);
    d.state = Impl::State::stopped;
    d.joining = true;
    for (auto* w : d.sleepers) w->cv.notify_one();
    left = d.running_total;
    for (auto it = d.workers.begin(); it != d.workers.end();) {
      auto& w = *it;
      if (w->in_task) {
        // Still inside user code past every deadline: it keeps the pool's
        // state alive (shared_ptr) and exits by itself when the task returns.
        w->thread.detach();
        ++it;
      } else {
        done.push_back(std::move(w));
        it = d.workers.erase(it);
      }
    }
  }
  Impl::join_all(done);
  return left;
}

bool ThreadPool::on_pool_thread() const noexcept { return tls_pool == impl_.get(); }

}  // namespace atask
