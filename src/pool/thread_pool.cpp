#include <atask/pool/thread_pool.hpp>

#include <atask/core/errors.hpp>

#include "util/platform.hpp"
#include "util/spin_mutex.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <limits>
#include <list>
#include <mutex>
#include <semaphore>
#include <thread>
#include <vector>

namespace atask {

namespace {

constexpr int unlimited = std::numeric_limits<int>::max();

int sat_add(int a, int b) noexcept {
  return a > unlimited - b ? unlimited : a + b;
}

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
    // Released (off the pool lock) by whoever takes this worker out of
    // `sleepers`; that signaler also counts it in `searching` again.
    std::binary_semaphore wake{0};
    bool signaled = false;
    bool exited = false;
    bool in_task = false;
    std::thread thread;
    int number = 0;
  };
  enum class State { created, running, closing, stopped };

  PoolOptions opt;
  std::shared_ptr<spdlog::logger> log;

  // Submitters push here without the lock (see enqueue()).
  detail::Inbox inbox;
  std::atomic<bool> accepting{false};
  std::atomic<int> submitting{0};  // submitters between their `accepting` check and their push

  mutable detail::SpinMutex m;
  std::array<detail::NodeList, priority_count> queues;
  std::array<int, priority_count> queued{}, running{};
  int queued_total = 0;
  // Written under m; read without it by submitters deciding whether to wake
  // a thread. seq_cst with the inbox push: see enqueue().
  std::atomic<int> running_total{0};
  std::atomic<int> searching{0};  // awake threads without a task (spinning, or woken and on their way)
  std::array<std::atomic<int>, 3> limit{};
  PoolLimits limits;
  int threads = 0;
  int next_number = 0;
  std::uint64_t completed = 0;
  std::vector<Worker*> sleepers;  // LIFO: the most recently idle thread is cache-warm
  std::list<std::unique_ptr<Worker>> workers;
  State state = State::created;
  bool joining = false;    // threads without work exit
  bool abandoned = false;  // abandon() let threads go: never wait for them again
  mutable std::condition_variable_any idle_cv;
  mutable int idle_waiters = 0;
  std::condition_variable_any exit_cv;

  // The spinning thread watches this (and the inbox) instead of the mutex.
  std::atomic<bool> work_hint{false};

  explicit Impl(PoolOptions o) : opt(std::move(o)), log(opt.logger ? opt.logger : detail::default_logger()) {
    validate(opt.limits, "ThreadPool::ThreadPool()");
    if (opt.idle_timeout.count() < 0)
      throw OptionsError("ThreadPool::ThreadPool() - idle_timeout must be >= 0");
    if (opt.spin.count() < 0) throw OptionsError("ThreadPool::ThreadPool() - spin must be >= 0");
    if (opt.prespawn && opt.limits.min_threads == 0)
      throw OptionsError("ThreadPool::ThreadPool() - prespawn needs min_threads > 0 (the threads it starts)");
    set_limits_locked(opt.limits);
  }

  void set_limits_locked(const PoolLimits& l) {
    limits = l;
    auto a = admission_limits(l);
    for (std::size_t i = 0; i < a.size(); ++i) limit[i].store(a[i]);
  }

  // -- under m ---------------------------------------------------------------
  void drain_locked() {
    inbox.drain([this](detail::PoolNode* n) {
      const auto p = index(n->priority());
      queues[p].push_back(n);
      ++queued[p];
      ++queued_total;
    });
  }

  bool admissible_locked() const noexcept {
    for (int i = int(priority_count) - 1; i >= 0; --i) {
      if (queues[i].empty()) continue;
      return i == int(Priority::critical) ||
             running_total.load(std::memory_order_relaxed) < limit[i].load(std::memory_order_relaxed);
    }
    return false;
  }

  void update_hint_locked() noexcept { work_hint.store(admissible_locked(), std::memory_order_relaxed); }

  detail::PoolNode* take_locked() noexcept {
    drain_locked();
    for (int i = int(priority_count) - 1; i >= 0; --i) {
      if (queues[i].empty()) continue;
      // The highest waiting priority decides: lower ones wait behind it.
      if (i != int(Priority::critical) &&
          running_total.load(std::memory_order_relaxed) >= limit[i].load(std::memory_order_relaxed))
        return nullptr;
      detail::PoolNode* n = queues[i].pop_front();
      --queued[i];
      --queued_total;
      ++running[i];
      running_total.fetch_add(1);
      return n;
    }
    return nullptr;
  }

  // A thread that has just run a task of priority `done` takes the next one
  // in the same stroke, as if it ended the first and started the second
  // atomically: running_total and `searching` do not move, so nobody can
  // see (or needs to see) a free slot or a searcher in between. Null when
  // nothing is admissible with the finished task's slot free; the caller
  // then ends the task the long way.
  detail::PoolNode* swap_locked(std::size_t done) noexcept {
    drain_locked();
    const int others = running_total.load(std::memory_order_relaxed) - 1;
    for (int i = int(priority_count) - 1; i >= 0; --i) {
      if (queues[i].empty()) continue;
      if (i != int(Priority::critical) && others >= limit[i].load(std::memory_order_relaxed)) return nullptr;
      detail::PoolNode* n = queues[i].pop_front();
      --queued[i];
      --queued_total;
      --running[done];
      ++running[i];
      ++completed;
      return n;
    }
    return nullptr;
  }

  // Takes a sleeper out of `sleepers`; the caller releases its semaphore
  // after unlocking, so the woken thread does not run into a held lock.
  Worker* pop_sleeper_locked() {
    Worker* w = sleepers.back();
    sleepers.pop_back();
    w->signaled = true;
    searching.fetch_add(1);
    return w;
  }

  // Keeps the invariant: while an admissible task waits, some thread without
  // a task is awake to take it. Everything else chains from that thread.
  // Returns a worker to wake (after unlocking), or nullptr.
  [[nodiscard]] Worker* ensure_searcher_locked() {
    if (searching.load() > 0 || !admissible_locked()) return nullptr;
    if (!sleepers.empty()) return pop_sleeper_locked();
    // Every thread runs a task, so running_total == threads: an admissible
    // task means the limit allows one more thread (or it is critical).
    spawn_locked();
    return nullptr;
  }

  static void wake(Worker* w) noexcept {
    if (w) w->wake.release();
  }

  void spawn_locked() {
    auto w = std::make_unique<Worker>();
    w->number = ++next_number;
    Worker* raw = w.get();
    workers.push_back(std::move(w));
    ++threads;
    searching.fetch_add(1);
    try {
      raw->thread = std::thread([self = shared_from_this(), raw] { self->main(raw); });
    } catch (const std::exception& e) {
      --threads;
      searching.fetch_sub(1);
      workers.pop_back();
      log->critical("{}: cannot start a pool thread: {}", opt.name, e.what());
    }
  }

  bool idle_locked() const { return running_total.load() == 0 && queued_total == 0 && inbox.empty(); }

  void notify_idle_locked() const {
    if (idle_waiters > 0 && idle_locked()) idle_cv.notify_all();
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

  // Stops submissions: after this returns no submitter is between its check
  // of `accepting` and its push, so the inbox content is final.
  void stop_accepting() {
    accepting.store(false);
    while (submitting.load() != 0) std::this_thread::yield();  // a few instructions away
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
    while (!work_hint.load(std::memory_order_relaxed) && inbox.empty()) {
      for (int i = 0; i < 32; ++i) detail::cpu_relax();
      if (std::chrono::steady_clock::now() >= until) return;
    }
  }

  void main(Worker* w) {
    tls_pool = this;
    detail::set_thread_name(opt.name + "-" + std::to_string(w->number));
    std::unique_lock<detail::SpinMutex> lk(m);
    bool spun = false, retire = false;
    // Invariant at the top of the loop: this thread is counted in `searching`.
    for (;;) {
      // Abandoned: a thread back from its task takes nothing more (the
      // supervisor whose books the next task reports to may be gone).
      if (abandoned) break;
      if (detail::PoolNode* n = take_locked()) {
        searching.fetch_sub(1);
        // Dekker with enqueue(), as before sleeping: a submitter that pushed
        // after take_locked() drained, and still saw us searching, left its
        // node to us. Queue it, so that ensure_searcher_locked() sees it.
        if (!inbox.empty()) drain_locked();
        spun = false;
        w->in_task = true;
        Worker* other = ensure_searcher_locked();
        update_hint_locked();
        lk.unlock();
        wake(other);
        // Runs n, then, while admissible work waits, the next task without
        // leaving the running count (swap_locked()).
        for (;;) {
          const auto p = index(n->priority());
          try {
            n->run();
          } catch (...) {
            report(std::current_exception());
          }
          n->release();
          lk.lock();
          detail::PoolNode* next = abandoned ? nullptr : swap_locked(p);
          if (!next) {
            --running[p];
            break;
          }
          n = next;
          other = ensure_searcher_locked();
          update_hint_locked();
          lk.unlock();
          wake(other);
        }
        w->in_task = false;
        // Become a searcher before the slot frees up: a submitter that sees
        // the lower running count must also see someone who will look.
        searching.fetch_add(1);
        running_total.fetch_sub(1);
        ++completed;
        update_hint_locked();
        notify_idle_locked();
        continue;
      }
      if (joining) break;
      // One spinner is enough to catch the next task without a futex wake;
      // more would only steal the CPU from threads running tasks.
      if (!spun && opt.spin.count() > 0 && searching.load() == 1) {
        spun = true;
        lk.unlock();
        spin();
        lk.lock();
        continue;
      }
      spun = false;
      // Going to sleep. Dekker with enqueue(): stop counting as a searcher,
      // then look at the inbox once more; a submitter pushes, then reads
      // `searching`. One of the two sees the other.
      searching.fetch_sub(1);
      if (!inbox.empty()) {
        searching.fetch_add(1);
        continue;
      }
      sleepers.push_back(w);
      w->signaled = false;
      const bool keep = threads <= limits.min_threads;
      lk.unlock();
      bool got = true;
      if (keep)
        w->wake.acquire();
      else
        got = w->wake.try_acquire_for(opt.idle_timeout);
      lk.lock();
      if (got) continue;  // the signaler counted us in `searching`
      if (w->signaled) {
        // A signal is on its way: consume it, so that no release() can
        // touch this worker after it exits.
        lk.unlock();
        w->wake.acquire();
        lk.lock();
        continue;
      }
      // Timed out, not signaled: still not counted in `searching` (see the
      // Dekker note above), so retiring does not touch it.
      std::erase(sleepers, w);
      if (threads > limits.min_threads && inbox.empty()) {
        retire = true;  // idle too long: surplus
        break;
      }
      searching.fetch_add(1);
    }
    if (!retire) searching.fetch_sub(1);
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
    close(QueuedTasks::cancel);
    abandon();
    return;
  }
  stop(QueuedTasks::cancel);
}

void ThreadPool::start() {
  auto& d = *impl_;
  std::unique_lock<detail::SpinMutex> lk(d.m);
  if (d.state != Impl::State::created)
    throw LifecycleError("ThreadPool::start() - pool '" + d.opt.name + "' was already started");
  d.state = Impl::State::running;
  d.accepting.store(true);
  if (d.opt.prespawn)
    while (d.threads < d.limits.min_threads) d.spawn_locked();
}

void ThreadPool::enqueue(detail::PoolNode* node) {
  auto& d = *impl_;
  d.submitting.fetch_add(1);
  if (!d.accepting.load()) {
    d.submitting.fetch_sub(1);
    bool started;
    {
      std::lock_guard<detail::SpinMutex> lk(d.m);
      started = d.state != Impl::State::created;
    }
    node->discard();
    node->release();
    throw LifecycleError(describe_state_for("ThreadPool::post()", d.opt.name, started));
  }
  const auto p = node->priority();
  d.inbox.push(node);
  d.submitting.fetch_sub(1);
  // Lock-free fast path: someone will take the node without our help when
  //  - a thread is searching: it drains the inbox before it sleeps (and a
  //    thread about to sleep re-reads the inbox after it stops counting
  //    itself here), or
  //  - the node cannot start now: running tasks hold every slot its priority
  //    may use, and each of their threads becomes a searcher when it ends.
  // Otherwise take the lock, and wake or start a thread.
  if (d.searching.load() > 0) return;
  if (p != Priority::critical && d.running_total.load() >= d.limit[index(p)].load()) return;
  std::unique_lock<detail::SpinMutex> lk(d.m);
  d.drain_locked();
  Impl::Worker* w = d.ensure_searcher_locked();
  d.update_hint_locked();
  std::vector<std::unique_ptr<Impl::Worker>> exited;
  if (d.workers.size() > std::size_t(d.threads))
    exited = d.collect_exited_locked();  // join them off the lock
  lk.unlock();
  Impl::wake(w);
  Impl::join_all(exited);
}

bool ThreadPool::remove(detail::PoolNode* node) noexcept {
  auto& d = *impl_;
  {
    std::lock_guard<detail::SpinMutex> lk(d.m);
    d.drain_locked();
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
  std::vector<Impl::Worker*> woken;
  {
    std::lock_guard<detail::SpinMutex> lk(d.m);
    d.set_limits_locked(limits);
    d.drain_locked();
    // Every sleeper re-evaluates its idle timeout against the new limits and
    // takes what became admissible.
    while (!d.sleepers.empty()) woken.push_back(d.pop_sleeper_locked());
    if (Impl::Worker* w = d.ensure_searcher_locked()) woken.push_back(w);
    d.update_hint_locked();
  }
  for (auto* w : woken) Impl::wake(w);
}

PoolInfo ThreadPool::info() const {
  auto& d = *impl_;
  std::lock_guard<detail::SpinMutex> lk(d.m);
  d.drain_locked();
  PoolInfo i;
  i.limits = d.limits;
  i.threads = d.threads;
  i.running = d.running;
  i.queued = d.queued;
  i.running_total = d.running_total.load();
  i.idle_threads = d.threads - i.running_total;
  i.queued_total = d.queued_total;
  i.completed_total = d.completed;
  return i;
}

void ThreadPool::close(QueuedTasks queued) {
  auto& d = *impl_;
  d.stop_accepting();
  std::vector<detail::PoolNode*> dropped;
  {
    std::lock_guard<detail::SpinMutex> lk(d.m);
    if (d.state == Impl::State::running || d.state == Impl::State::created) d.state = Impl::State::closing;
    d.drain_locked();
    if (queued == QueuedTasks::cancel) {
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
  std::unique_lock<detail::SpinMutex> lk(d.m);
  ++d.idle_waiters;
  bool ok = d.idle_cv.wait_until(lk, deadline, [&] { return d.idle_locked(); });
  --d.idle_waiters;
  return ok;
}

void ThreadPool::wait_idle() const {
  auto& d = *impl_;
  std::unique_lock<detail::SpinMutex> lk(d.m);
  ++d.idle_waiters;
  d.idle_cv.wait(lk, [&] { return d.idle_locked(); });
  --d.idle_waiters;
}

void ThreadPool::stop(QueuedTasks queued) {
  if (on_pool_thread())
    throw LifecycleError(
        "ThreadPool::stop() - called from one of the pool's own threads; it would wait for itself");
  auto& d = *impl_;
  {
    std::lock_guard<detail::SpinMutex> lk(d.m);
    if (d.abandoned) return;
  }
  close(queued);
  wait_idle();
  std::vector<std::unique_ptr<Impl::Worker>> all;
  {
    std::unique_lock<detail::SpinMutex> lk(d.m);
    if (d.state == Impl::State::stopped && d.workers.empty()) return;
    d.state = Impl::State::stopped;
    d.joining = true;
    std::vector<Impl::Worker*> woken;
    while (!d.sleepers.empty()) woken.push_back(d.pop_sleeper_locked());
    lk.unlock();
    for (auto* w : woken) Impl::wake(w);
    lk.lock();
    d.exit_cv.wait(lk, [&] { return d.threads == 0; });
    all.assign(std::make_move_iterator(d.workers.begin()), std::make_move_iterator(d.workers.end()));
    d.workers.clear();
  }
  Impl::join_all(all);
}

int ThreadPool::abandon() noexcept {
  auto& d = *impl_;
  d.stop_accepting();
  std::vector<std::unique_ptr<Impl::Worker>> done;
  std::vector<Impl::Worker*> woken;
  std::vector<detail::PoolNode*> dropped;
  int left = 0;
  {
    std::lock_guard<detail::SpinMutex> lk(d.m);
    d.state = Impl::State::stopped;
    d.joining = true;
    d.abandoned = true;
    // What still waits never runs: no thread is left to run it but the
    // abandoned ones, and those exit when their task returns.
    d.drain_locked();
    for (auto& q : d.queues)
      while (auto* n = q.pop_front()) dropped.push_back(n);
    d.queued.fill(0);
    d.queued_total = 0;
    d.update_hint_locked();
    while (!d.sleepers.empty()) woken.push_back(d.pop_sleeper_locked());
    left = d.running_total.load();
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
  for (auto* w : woken) Impl::wake(w);
  Impl::join_all(done);
  for (auto* n : dropped) {
    n->discard();
    n->release();
  }
  return left;
}

bool ThreadPool::on_pool_thread() const noexcept {
  return tls_pool == impl_.get();
}

}  // namespace atask
