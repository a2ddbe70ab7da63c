// The process pool's lifecycle, queueing and dispatch: tasks queued from
// any thread, handed to an idle child by the submitting thread or by the
// loop. The children themselves (forking, replies, exits, kills) are in
// children.cpp, the tasks sent ahead to busy children in prefetch.cpp; the
// design is in process_pool.hpp.

#include "process/process_pool.hpp"

#include "util/platform.hpp"

#include <atask/core/errors.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <spdlog/spdlog.h>

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <future>
#include <new>
#include <system_error>

namespace asio = boost::asio;

namespace atask::detail {

// -- the hooks process tasks call ---------------------------------------------------------
bool process_cancel_running(ProcessPool& pool, ProcessJob& job) noexcept {
  return pool.cancel_running(job);
}
void process_request_stop(ProcessPool& pool, ProcessJob& job) noexcept {
  pool.request_stop(job);
}
void process_remove_queued(ProcessPool& pool, ProcessJob& job) noexcept {
  pool.remove_queued(job);
}
bool process_claim_unstarted(ProcessPool& pool, ProcessJob& job) noexcept {
  return pool.claim_unstarted(job);
}

namespace {

constexpr std::size_t critical = index(Priority::critical);
// The stop slots, then the claim words, in one shared mapping.
constexpr std::size_t shared_bytes =
    sizeof(StopSlot) * stop_slot_count + sizeof(ClaimWord) * stop_slot_count * claim_ring;

Ref<TaskStateBase> ref_of(TaskStateBase& t) noexcept {
  t.add_ref();
  return Ref<TaskStateBase>::adopt(&t);
}

template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

std::string task_name(const ProcessJob& j) {
  return "task #" + std::to_string(const_cast<ProcessJob&>(j).task().id());
}

}  // namespace

// -- JobList ------------------------------------------------------------------------------
void ProcessPool::JobList::push_back(ProcessJob* j) noexcept {
  j->q_prev = tail;
  j->q_next = nullptr;
  j->q_linked = true;
  if (tail)
    tail->q_next = j;
  else
    head = j;
  tail = j;
}

void ProcessPool::JobList::insert_sorted(ProcessJob* j) noexcept {
  ProcessJob* after = nullptr;  // the last one that goes before j
  for (ProcessJob* k = head; k && k->q_seq < j->q_seq; k = k->q_next) after = k;
  j->q_prev = after;
  j->q_next = after ? after->q_next : head;
  j->q_linked = true;
  if (j->q_next)
    j->q_next->q_prev = j;
  else
    tail = j;
  if (after)
    after->q_next = j;
  else
    head = j;
}

ProcessJob* ProcessPool::JobList::pop_front() noexcept {
  ProcessJob* j = head;
  if (j) remove(j);
  return j;
}

void ProcessPool::JobList::remove(ProcessJob* j) noexcept {
  if (j->q_prev)
    j->q_prev->q_next = j->q_next;
  else
    head = j->q_next;
  if (j->q_next)
    j->q_next->q_prev = j->q_prev;
  else
    tail = j->q_prev;
  j->q_prev = j->q_next = nullptr;
  j->q_linked = false;
}

ProcessPool::Fd::~Fd() {
  if (fd >= 0) ::close(fd);
}

bool ProcessPool::Fd::put(std::uint64_t seq, std::string frame, std::uint64_t count) {
  std::lock_guard lk(wm);
  if (seq != next) {
    early.emplace(seq, std::make_pair(std::move(frame), count));
    return false;  // the thread that puts `next` writes it
  }
  if (out_at == out.size()) {
    out.clear();
    out_at = 0;
  }
  if (out.empty())
    out = std::move(frame);
  else
    out += frame;
  next += count;
  for (auto it = early.begin(); it != early.end() && it->first == next; it = early.erase(it)) {
    out += it->second.first;
    next += it->second.second;
  }
  if (loop_writes) return false;  // the loop is at it
  if (!write_some()) return false;
  loop_writes = true;
  return true;
}

bool ProcessPool::Fd::write_some() noexcept {
  while (out_at < out.size()) {
    const ssize_t r = ::send(fd, out.data() + out_at, out.size() - out_at, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0)
      out_at += std::size_t(r);
    else if (r < 0 && errno == EINTR)
      continue;
    else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    else {  // a dead child: its exit report settles its tasks
      out.clear();
      out_at = 0;
      return false;
    }
  }
  return false;
}

// Ends a task a child had taken. One taken by a submitting thread may not
// have run try_start() yet: then it never ran, and ends canceled.
void ProcessPool::end_taken(ProcessJob& j, std::exception_ptr e, bool canceled) noexcept {
  if (j.task().cancel_pending(std::make_exception_ptr(
          TaskCanceled(task_name(j) + " was canceled: its child process went away before it started"))))
    return;
  j.fail(std::move(e), canceled);
}

// -- lifecycle ----------------------------------------------------------------------------
ProcessPool::ProcessPool(ProcessPoolOptions o, std::string id, std::shared_ptr<spdlog::logger> log)
    : opt_(o), id_(std::move(id)), log_(std::move(log)) {
  if (const int n = thread_count(); n > 1)
    log_->warn(
        "{}: forking the process pool's fork server while this process runs {} threads; construct the "
        "Supervisor before starting threads, so that no lock another thread holds is copied into the "
        "children",
        id_, n);
  void* mem = ::mmap(nullptr, shared_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the stop slots");
  slots_ = static_cast<StopSlot*>(mem);
  claims_ = reinterpret_cast<ClaimWord*>(slots_ + stop_slot_count);
  for (int i = stop_slot_count - 1; i >= 0; --i) {
    new (&slots_[i]) StopSlot(0);
    free_slots_.push_back(i);
  }
  for (int i = 0; i < stop_slot_count * claim_ring; ++i) new (&claims_[i]) ClaimWord(0);
  try {
    server_ = start_fork_server(id_, slots_, claims_);
  } catch (...) {
    ::munmap(slots_, shared_bytes);
    throw;
  }
  log_->debug("{}: fork server started (pid {})", id_, server_.pid);
}

ProcessPool::~ProcessPool() {
  stop();
  ::munmap(slots_, shared_bytes);
}

void ProcessPool::start(asio::io_context& ctx) {
  ctx_ = &ctx;
  ctl_.emplace(ctx, server_.ctl);  // owns the fd from now on
  retry_.emplace(ctx);
  asio::post(ctx, [this] {
    read_ctl();
    replenish();
  });
}

void ProcessPool::stop() noexcept {
  {
    std::lock_guard lk(m_);
    if (stopped_) return;
    stopped_ = closed_ = true;
  }
  if (ctx_ && !ctx_->stopped()) {
    std::promise<void> done;
    auto f = done.get_future();
    asio::post(*ctx_, [this, &done] {
      shutdown_on_loop();
      done.set_value();
    });
    f.wait();
  } else if (ctx_) {
    shutdown_on_loop();  // the loop is gone: nothing else runs these objects
  } else if (server_.ctl >= 0) {
    ::close(server_.ctl);  // never started: closing the control socket ends the server
    server_.ctl = -1;
  }
  reap_server();
}

void ProcessPool::shutdown_on_loop() noexcept {
  fail_all("the process pool stopped");
  if (retry_) retry_->cancel();
  boost::system::error_code ec;
  if (ctl_) ctl_->close(ec);  // EOF for the server: it kills and reaps every child, then exits
  server_.ctl = -1;
}

std::optional<int> ProcessPool::reap_server() noexcept {
  if (server_.pid <= 0) return std::nullopt;
  bool exited = false;
  const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, server_.pid, 0));
  if (pfd >= 0) {
    pollfd p{pfd, POLLIN, 0};
    int r;
    while ((r = ::poll(&p, 1, 10'000)) < 0 && errno == EINTR) {
    }
    exited = r > 0;
    ::close(pfd);
  } else {
    exited = true;  // no pidfd: wait without a deadline (the server exits at once on EOF)
  }
  if (!exited) {
    log_->error("{}: the fork server (pid {}) did not exit within 10 s - killing it", id_, server_.pid);
    ::kill(server_.pid, SIGKILL);
  }
  int status = 0;
  pid_t r;
  while ((r = ::waitpid(server_.pid, &status, 0)) < 0 && errno == EINTR) {
  }
  log_->debug("{}: fork server (pid {}) reaped", id_, server_.pid);
  server_.pid = -1;
  if (r <= 0 || !exited) return std::nullopt;  // not its own end: we killed it
  return status;
}

// -- queueing (any thread) ----------------------------------------------------------------
void ProcessPool::enqueue(ProcessJob& job) {
  std::string refused;
  Dispatch d;
  bool took = false, need_extra = false, want_pump = false;
  {
    std::lock_guard lk(m_);
    if (broken_)
      refused = "the process pool of supervisor '" + id_ + "' is unusable: " + broken_why_;
    else if (closed_)
      refused = "the process pool of supervisor '" + id_ + "' is stopping";
    else {
      job.task().add_ref();
      const auto p = index(job.task().priority());
      job.q_seq = ++next_q_seq_;
      queues_[p].push_back(&job);
      ++queued_[p];
      // An idle child takes it from this thread: no hop through the loop.
      if (ctx_) took = take_locked(d, need_extra);
      // Else a busy child may hold it ahead: the loop sends it.
      want_pump = !took && ctx_ && p != critical && prefetch_room_locked();
    }
  }
  if (!refused.empty()) {
    job.task().cancel_pending(
        std::make_exception_ptr(TaskCanceled(task_name(job) + " was canceled: " + refused)));
    throw LifecycleError("Supervisor::submit() - " + refused);
  }
  if (took)
    launch(d, false);
  else if (need_extra || want_pump || !ctx_)
    schedule_pump();
}

void ProcessPool::schedule_pump() noexcept {
  if (!ctx_ || pump_posted_.exchange(true)) return;
  try {
    asio::post(*ctx_, [this] {
      pump_posted_.store(false);
      pump();
    });
  } catch (...) {
    pump_posted_.store(false);
  }
}

void ProcessPool::remove_queued(ProcessJob& job) noexcept {
  {
    std::lock_guard lk(m_);
    if (!job.q_linked) return;  // taken for a child already: launch() drops it when try_start() fails
    const auto p = index(job.task().priority());
    queues_[p].remove(&job);
    --queued_[p];
  }
  job.task().release();  // the caller holds another reference
}

// Any thread. Exact: the task is claimed for the cancel under m_, where a
// reply takes it too (on_reply), so true means it ends canceled and false
// that its reply came first. The kill itself is on the loop.
bool ProcessPool::cancel_running(ProcessJob& job) noexcept {
  {
    std::lock_guard lk(m_);
    if (!ctx_) return false;
    Child* c = nullptr;
    for (auto& [k, ch] : children_) {
      if (ch->job == &job) {
        c = ch.get();
        break;
      }
      // Claimed by its child from ahead, its start report not read yet: it
      // ends canceled when that report (or the child's end) comes.
      for (Held& h : ch->held)
        if (h.job == &job) {
          h.cancel = true;
          return true;
        }
    }
    if (!c) return false;  // its reply (or its child's end) took it first
    if (c->canceling) return true;
    c->canceling = true;
  }
  try {
    asio::post(*ctx_, [this, r = ref_of(job.task()), j = &job] { kill_canceled(j); });
  } catch (...) {  // the loop is gone: the pool's stop ends the task, canceled (fail_all)
  }
  return true;
}

// Any thread: the running child sees it through its stop slot.
void ProcessPool::request_stop(ProcessJob& job) noexcept {
  std::lock_guard lk(m_);
  for (auto& [k, c] : children_) {
    if (c->job == &job) {
      if (c->slot >= 0) slots_[c->slot].store(c->job_id, std::memory_order_relaxed);
      return;
    }
    for (Held& h : c->held)
      if (h.job == &job) {
        // Held ahead: the child sees the request when it claims the task.
        ClaimWord& w = claim_word(*c, h.index);
        std::uint64_t v = w.load();
        while ((v & claim_offer_mask) == h.offer && !(v & claim_claimed))
          if (w.compare_exchange_weak(v, v | claim_stop)) return;
        // Claimed already: it runs.
        if (c->slot >= 0) slots_[c->slot].store(h.id, std::memory_order_relaxed);
        return;
      }
  }
}

// Any thread, from cancel_pending(): a task held ahead is taken back from
// its child (it never runs) unless the child claimed it first; then it has
// started, and is marked so here (the start report may still be on its way).
bool ProcessPool::claim_unstarted(ProcessJob& job) noexcept {
  ProcessJob* back = nullptr;
  bool claimed = false;
  {
    std::lock_guard lk(m_);
    job.no_prefetch = true;  // from now on it is never sent ahead: the cancel decides
    if (job.held_by == 0) return true;
    Child* c = find_key(job.held_by);
    if (!c) return true;
    for (std::size_t i = 0; i < c->held.size(); ++i)
      if (c->held[i].job == &job) {
        // Claimed but not running yet: revoked, it never runs (its child skips it).
        back = take_back_locked(*c, i, true);
        if (back) {
          --queued_[index(job.task().priority())];
          idle_if_free_locked(*c);
        } else {
          claimed = true;
        }
        break;
      }
  }
  if (back) {
    job.task().release();  // the hold's; the canceling caller has its own
    schedule_pump();       // its child has room ahead again
    return true;
  }
  if (!claimed) return true;
  job.task().try_start();
  return false;
}

int ProcessPool::limit_for(std::size_t p) const noexcept {
  switch (p) {
    case 0:
      return opt_.pool_size;
    case 1:
      return opt_.pool_size + opt_.reserve_normal;
    case 2:
      return opt_.pool_size + opt_.reserve_normal + opt_.reserve_high;
    default:
      return INT_MAX;
  }
}

std::chrono::milliseconds ProcessPool::hard_limit(const ProcessJob& j) const noexcept {
  return j.time_limit.count() > 0 ? j.time_limit : opt_.time_limit;
}
std::chrono::milliseconds ProcessPool::soft_limit(const ProcessJob& j) const noexcept {
  return j.soft_time_limit.count() > 0 ? j.soft_time_limit : opt_.soft_time_limit;
}

// -- dispatch -----------------------------------------------------------------------------
// Takes the next admissible task and an idle child for it (under m_): the
// highest waiting priority decides, lower ones wait behind it, as in the
// thread pool. `need_extra`: a critical task waits and no child is free.
bool ProcessPool::take_locked(Dispatch& d, bool& need_extra) {
  if (closed_ || broken_) return false;
  int p = -1;
  for (int i = int(priority_count) - 1; i >= 0; --i)
    if (!queues_[i].empty()) {
      p = i;
      break;
    }
  if (p < 0) return false;
  if (std::size_t(p) != critical && running_total_ >= limit_for(std::size_t(p))) return false;
  Child* c = nullptr;
  for (auto& [k, ch] : children_)
    if (ch->state == ChildState::idle) {
      c = ch.get();
      break;
    }
  if (!c) {
    // A critical task never waits for a slot: it gets a child of its own.
    need_extra = std::size_t(p) == critical && queued_[critical] > extra_forking_;
    return false;
  }
  ProcessJob* job = queues_[p].pop_front();
  --queued_[p];
  ++running_[p];
  ++running_total_;
  c->state = ChildState::busy;
  c->job = job;
  c->job_id = job->task().id();
  job->child_pid.store(c->pid, std::memory_order_relaxed);
  ++c->sent;
  c->last_task = opt_.max_tasks_per_child > 0 && c->sent >= opt_.max_tasks_per_child;
  job->task().add_ref();  // the launcher's, while it reads the job outside the lock
  d = {job, c->key, c->job_id, c->next_seq++, c->wfd, c->slot};
  return true;
}

// Starts a taken task in its child: on the loop thread (from pump) or on
// the submitting thread (from enqueue, which writes the request itself).
// Off the loop the child may die meanwhile: its exit report then ends the
// task - canceled if try_start() has not run yet, failed if it has.
void ProcessPool::launch(Dispatch& d, bool on_loop) {
  ProcessJob& job = *d.job;
  Ref<TaskStateBase> keep = Ref<TaskStateBase>::adopt(&job.task());
  if (!job.task().try_start()) {  // canceled after we took it: the child is free again
    d.fd->put(d.seq, {});         // nothing goes out in its place
    {
      std::lock_guard lk(m_);
      Child* c = find_key(d.key);
      if (c && c->job == &job) {
        const auto p = index(job.task().priority());
        --running_[p];
        --running_total_;
        c->job = nullptr;
        job.child_pid.store(0, std::memory_order_relaxed);  // it never ran there
        if (c->state == ChildState::busy && c->held.empty()) c->state = ChildState::idle;
        --c->sent;
        c->last_task = false;
        job.task().release();  // the child's
      }
    }
    if (!on_loop) schedule_pump();
    return;
  }
  // A stop requested while it was queued applies from its first instruction.
  if (d.slot >= 0 && job.task().stop_token().stop_requested())
    slots_[d.slot].store(d.id, std::memory_order_relaxed);
  // The request; the arguments are not needed in the parent any more.
  std::string frame = request(job, d.id, 0, 0);
  std::string().swap(job.args);
  const auto lim = hard_limit(job);
  const bool rest = d.fd->put(d.seq, std::move(frame));
  if (!rest && lim.count() == 0) return;
  auto finish = [this, key = d.key, id = d.id, rest, lim, from = std::chrono::steady_clock::now()] {
    Child* c = find_key(key);
    if (!c) return;
    if (rest) flush_child(*c);
    if (lim.count() > 0 && runs(*c, id)) arm_limit(*c, lim, from);
  };
  if (on_loop)
    finish();
  else
    asio::post(*ctx_, std::move(finish));
}

std::string ProcessPool::request(const ProcessJob& j, std::uint64_t id, std::uint64_t offer,
                                 int index) const {
  std::string frame;
  frame.reserve(4 + request_head + j.args.size());
  put<std::uint32_t>(frame, static_cast<std::uint32_t>(request_head + j.args.size()));
  put<std::uint64_t>(frame, id);
  put<std::uint64_t>(frame, reinterpret_cast<std::uintptr_t>(j.entry));
  put<std::uint64_t>(frame, reinterpret_cast<std::uintptr_t>(j.fn));
  put<std::int64_t>(frame, std::chrono::nanoseconds(soft_limit(j)).count());
  put<std::uint64_t>(frame, offer);
  put<std::uint32_t>(frame, static_cast<std::uint32_t>(index));
  frame.append(j.args);
  return frame;
}

// Loop thread: writes what a child's Fd still holds once its socket takes it.
void ProcessPool::flush_child(Child& c) {
  c.sock->async_wait(asio::socket_base::wait_write, [this, key = c.key](boost::system::error_code ec) {
    Child* c = find_key(key);
    if (!c) return;
    bool more = false;
    {
      std::lock_guard lk(c->wfd->wm);
      if (ec) {  // closed or dead: its exit report settles its tasks
        c->wfd->out.clear();
        c->wfd->out_at = 0;
      } else {
        more = c->wfd->write_some();
      }
      if (!more) c->wfd->loop_writes = false;
    }
    if (more) flush_child(*c);
  });
}

void ProcessPool::arm_limit(Child& c, std::chrono::milliseconds lim,
                            std::chrono::steady_clock::time_point from) {
  c.hard->expires_at(from + lim);
  std::uint64_t job_id;
  {
    std::lock_guard lk(m_);
    job_id = c.job_id;
  }
  c.hard->async_wait([this, key = c.key, id = job_id, lim](boost::system::error_code ec) {
    if (ec) return;
    Child* ch = find_key(key);
    if (!ch || !runs(*ch, id)) return;
    // Its reply may be in the socket, unread: then it completes with it.
    if (!(ch = settle_before_kill(key, id, false))) return;
    kill_child(*ch,
               std::make_exception_ptr(
                   TimeLimitExceeded("task #" + std::to_string(id) + " exceeded its hard time limit of " +
                                     std::to_string(lim.count()) + " ms: its child process (pid " +
                                     std::to_string(ch->pid) + ") was killed")),
               false);
  });
}

// -- the loop thread (dispatch; the children are in children.cpp) ------------------
void ProcessPool::pump() {
  bool need_extra = false;
  for (int pass = 0; pass < 4; ++pass) {
    for (;;) {
      Dispatch d;
      {
        std::lock_guard lk(m_);
        if (!take_locked(d, need_extra)) break;
      }
      launch(d, true);
    }
    std::lock_guard lk(m_);
    if (!rebalance_locked()) break;  // else an idle child takes what came back
  }
  std::vector<Ahead> ahead;
  {
    std::lock_guard lk(m_);
    prefetch_locked(ahead);
  }
  // One write per child for what it gets ahead: its requests have consecutive numbers.
  std::sort(ahead.begin(), ahead.end(),
            [](const Ahead& x, const Ahead& y) { return x.key != y.key ? x.key < y.key : x.seq < y.seq; });
  for (std::size_t i = 0; i < ahead.size();) {
    std::size_t j = i + 1;
    while (j < ahead.size() && ahead[j].key == ahead[i].key) ++j;
    send_ahead(ahead.data() + i, j - i);
    i = j;
  }
  if (need_extra) spawn(true);
}

// Every queued task ends canceled, every running one failed; the children's
// sockets close (they exit on EOF, or with the server).
void ProcessPool::fail_all(const std::string& why) {
  std::vector<ProcessJob*> queued, running, canceling;
  std::vector<std::unique_ptr<Child>> gone;
  std::vector<Held> ran;
  {
    std::lock_guard lk(m_);
    for (auto& [k, c] : children_) {
      auto r = take_back_all_locked(*c);
      ran.insert(ran.end(), r.begin(), r.end());
    }
    for (auto& q : queues_)
      while (ProcessJob* j = q.pop_front()) queued.push_back(j);
    queued_ = {};
    for (auto& [k, c] : children_)
      if (c->job) {
        (c->canceling ? canceling : running).push_back(c->job);
        c->job = nullptr;
      }
    running_ = {};
    running_total_ = 0;
    for (auto& [k, c] : children_) {
      if (c->slot >= 0) free_slots_.push_back(c->slot);
      gone.push_back(std::move(c));
    }
    children_.clear();
    extra_forking_ = 0;
  }
  for (auto& c : gone) {
    boost::system::error_code ec;
    if (c->hard) c->hard->cancel();
    if (c->sock) c->sock->close(ec);
  }
  gone.clear();
  for (ProcessJob* j : queued) {
    j->task().cancel_pending(std::make_exception_ptr(TaskCanceled(task_name(*j) + " was canceled: " + why)));
    j->task().release();
  }
  for (ProcessJob* j : running) {
    end_taken(*j, std::make_exception_ptr(ProcessError(task_name(*j) + " failed: " + why)), false);
    j->task().release();
  }
  for (ProcessJob* j : canceling) {  // cancel() said they end canceled
    end_taken(*j, std::make_exception_ptr(TaskCanceled(task_name(*j) + " was canceled while running")), true);
    j->task().release();
  }
  end_ran(ran, [&](const Held& h) {
    return h.cancel ? std::make_exception_ptr(TaskCanceled(task_name(*h.job) + " was canceled while running"))
                    : std::make_exception_ptr(ProcessError(task_name(*h.job) + " failed: " + why));
  });
}

// Loop thread: the child running `j`, if any (its task fields are written
// under m_ by submitting threads too).
ProcessPool::Child* ProcessPool::child_running(const ProcessJob* j) noexcept {
  std::lock_guard lk(m_);
  for (auto& [k, c] : children_)
    if (c->job == j) return c.get();
  return nullptr;
}

bool ProcessPool::runs(const Child& c, std::uint64_t id) noexcept {
  std::lock_guard lk(m_);
  return c.job && c.job_id == id && !c.canceling;  // a cancel's kill is on its way
}

ProcessPoolInfo ProcessPool::info() const {
  ProcessPoolInfo i;
  i.enabled = true;
  i.options = opt_;
  std::lock_guard lk(m_);
  i.fork_server_pid = broken_ || stopped_ ? 0 : server_.pid;
  for (auto& [k, c] : children_) {
    if (c->state == ChildState::dying) continue;
    ++i.children;
    if (c->state == ChildState::idle) ++i.idle_children;
    if (c->pid > 0) i.child_pids.push_back(c->pid);
  }
  i.running = running_;
  i.queued = queued_;
  i.running_total = running_total_;
  for (int q : queued_) i.queued_total += q;
  i.completed_total = completed_;
  i.spawned = spawned_;
  i.crashed = crashed_;
  i.killed = killed_;
  i.recycled = recycled_;
  i.extra_retired = extra_retired_;
  i.prefetched = held_total_;
  return i;
}

}  // namespace atask::detail
