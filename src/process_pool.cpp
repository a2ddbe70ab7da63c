#include "detail/process_pool.hpp"

#include "detail/platform.hpp"

#include <atask/errors.hpp>

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

#include <climits>
#include <cstring>
#include <future>
#include <new>
#include <system_error>

namespace asio = boost::asio;

namespace atask::detail {

// -- the hooks process tasks call ---------------------------------------------------------
void process_cancel_running(ProcessPool& pool, ProcessJob& job) noexcept {
  pool.cancel_running(job);
}
void process_request_stop(ProcessPool& pool, ProcessJob& job) noexcept {
  pool.request_stop(job);
}
void process_remove_queued(ProcessPool& pool, ProcessJob& job) noexcept {
  pool.remove_queued(job);
}

namespace {

constexpr std::size_t critical = index(Priority::critical);

Ref<TaskStateBase> ref_of(TaskStateBase& t) noexcept {
  t.add_ref();
  return Ref<TaskStateBase>::adopt(&t);
}

template <class T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
T get(const char* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
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
        "Supervisor before starting threads, so that no lock another thread holds is copied into the children",
        id_, n);
  void* mem = ::mmap(nullptr, sizeof(StopSlot) * stop_slot_count, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
  if (mem == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the stop slots");
  slots_ = static_cast<StopSlot*>(mem);
  for (int i = stop_slot_count - 1; i >= 0; --i) {
    new (&slots_[i]) StopSlot(0);
    free_slots_.push_back(i);
  }
  try {
    server_ = start_fork_server(id_, slots_);
  } catch (...) {
    ::munmap(slots_, sizeof(StopSlot) * stop_slot_count);
    throw;
  }
  log_->debug("{}: fork server started (pid {})", id_, server_.pid);
}

ProcessPool::~ProcessPool() {
  stop();
  ::munmap(slots_, sizeof(StopSlot) * stop_slot_count);
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

void ProcessPool::reap_server() noexcept {
  if (server_.pid <= 0) return;
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
  while (::waitpid(server_.pid, &status, 0) < 0 && errno == EINTR) {
  }
  log_->debug("{}: fork server (pid {}) reaped", id_, server_.pid);
  server_.pid = -1;
}

// -- queueing (any thread) ----------------------------------------------------------------
void ProcessPool::enqueue(ProcessJob& job) {
  std::string refused;
  Dispatch d;
  bool took = false, need_extra = false;
  {
    std::lock_guard lk(m_);
    if (broken_)
      refused = "the process pool of supervisor '" + id_ + "' is unusable: " + broken_why_;
    else if (closed_)
      refused = "the process pool of supervisor '" + id_ + "' is stopping";
    else {
      job.task().add_ref();
      const auto p = index(job.task().priority());
      queues_[p].push_back(&job);
      ++queued_[p];
      // An idle child takes it from this thread: no hop through the loop.
      if (ctx_) took = take_locked(d, need_extra);
    }
  }
  if (!refused.empty()) {
    job.task().cancel_pending(std::make_exception_ptr(TaskCanceled(task_name(job) + " was canceled: " + refused)));
    throw LifecycleError("Supervisor::submit() - " + refused);
  }
  if (took)
    launch(d, false);
  else if (need_extra || !ctx_)
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

void ProcessPool::cancel_running(ProcessJob& job) noexcept {
  if (!ctx_) return;
  try {
    asio::post(*ctx_, [this, r = ref_of(job.task()), j = &job] {
      Child* c = child_running(j);
      if (!c) return;  // over already
      kill_child(*c,
                 std::make_exception_ptr(TaskCanceled(task_name(*j) + " was canceled while running: its child process (pid " +
                                                      std::to_string(c->pid) + ") was killed")),
                 true);
    });
  } catch (...) {  // the loop is gone: so is the child
  }
}

// Any thread: the running child sees it through its stop slot.
void ProcessPool::request_stop(ProcessJob& job) noexcept {
  std::lock_guard lk(m_);
  for (auto& [k, c] : children_)
    if (c->job == &job) {
      if (c->slot >= 0) slots_[c->slot].store(c->job_id, std::memory_order_relaxed);
      return;
    }
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
  ++c->sent;
  c->last_task = opt_.max_tasks_per_child > 0 && c->sent >= opt_.max_tasks_per_child;
  job->task().add_ref();  // the launcher's, while it reads the job outside the lock
  d = {job, c->key, c->job_id, c->wfd, c->slot};
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
    {
      std::lock_guard lk(m_);
      Child* c = find_key(d.key);
      if (c && c->job == &job) {
        const auto p = index(job.task().priority());
        --running_[p];
        --running_total_;
        c->job = nullptr;
        if (c->state == ChildState::busy) c->state = ChildState::idle;
        --c->sent;
        c->last_task = false;
        job.task().release();  // the child's
      }
    }
    if (!on_loop) schedule_pump();
    return;
  }
  // A stop requested while it was queued applies from its first instruction.
  if (d.slot >= 0 && job.task().stop_token().stop_requested()) slots_[d.slot].store(d.id, std::memory_order_relaxed);
  // The request frame; the arguments are not needed in the parent any more.
  auto frame = std::make_shared<std::string>();
  frame->reserve(4 + request_head + job.args.size());
  put<std::uint32_t>(*frame, static_cast<std::uint32_t>(request_head + job.args.size()));
  put<std::uint64_t>(*frame, d.id);
  put<std::uint64_t>(*frame, reinterpret_cast<std::uintptr_t>(job.entry));
  put<std::uint64_t>(*frame, reinterpret_cast<std::uintptr_t>(job.fn));
  put<std::int64_t>(*frame, std::chrono::nanoseconds(soft_limit(job)).count());
  frame->append(job.args);
  std::string().swap(job.args);
  const auto lim = hard_limit(job);

  std::size_t sent = 0;
  if (!on_loop) {
    while (sent < frame->size()) {
      const ssize_t r = ::send(d.fd->fd, frame->data() + sent, frame->size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r > 0)
        sent += std::size_t(r);
      else if (r < 0 && errno == EINTR)
        continue;
      else
        break;  // full socket buffer (the loop writes the rest) or a dead child (its exit report settles it)
    }
    if (sent == frame->size() && lim.count() == 0) return;
  }
  auto finish = [this, key = d.key, id = d.id, frame, sent, lim] {
    Child* c = find_key(key);
    if (!c || !runs(*c, id)) return;  // over already
    if (sent < frame->size())
      asio::async_write(*c->sock, asio::buffer(frame->data() + sent, frame->size() - sent),
                        [frame](boost::system::error_code, std::size_t) {
                          // A child that cannot be written to is dead or dying: its exit report fails the task.
                        });
    if (lim.count() > 0) arm_limit(*c, lim);
  };
  if (on_loop)
    finish();
  else
    asio::post(*ctx_, std::move(finish));
}

void ProcessPool::arm_limit(Child& c, std::chrono::milliseconds lim) {
  c.hard->expires_after(lim);
  std::uint64_t job_id;
  {
    std::lock_guard lk(m_);
    job_id = c.job_id;
  }
  c.hard->async_wait([this, key = c.key, id = job_id, lim](boost::system::error_code ec) {
    if (ec) return;
    Child* ch = find_key(key);
    if (!ch || !runs(*ch, id)) return;
    kill_child(*ch,
               std::make_exception_ptr(TimeLimitExceeded("task #" + std::to_string(id) +
                                                         " exceeded its hard time limit of " +
                                                         std::to_string(lim.count()) + " ms: its child process (pid " +
                                                         std::to_string(ch->pid) + ") was killed")),
               false);
  });
}

// -- the loop thread ----------------------------------------------------------------------
void ProcessPool::pump() {
  bool need_extra = false;
  for (;;) {
    Dispatch d;
    {
      std::lock_guard lk(m_);
      if (!take_locked(d, need_extra)) break;
    }
    launch(d, true);
  }
  if (need_extra) spawn(true);
}

// Keeps pool_size + reserves children that will take tasks (forking, idle
// or busy with more to come).
void ProcessPool::replenish() {
  int live = 0;
  {
    std::lock_guard lk(m_);
    if (closed_ || broken_) return;
    for (auto& [k, c] : children_)
      if ((c->state == ChildState::forking || c->state == ChildState::idle || c->state == ChildState::busy) &&
          !c->last_task && !c->extra)
        ++live;
  }
  const int want = opt_.pool_size + opt_.reserve_normal + opt_.reserve_high;
  for (int i = live; i < want; ++i) spawn(false);
}

void ProcessPool::spawn(bool extra) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    log_->error("{}: cannot create a socket for a child process: {}", id_, std::strerror(errno));
    return;
  }
  auto c = std::make_unique<Child>();
  c->key = ++next_key_;
  c->extra = extra;
  {
    std::lock_guard lk(m_);
    if (!free_slots_.empty()) {
      c->slot = free_slots_.back();
      free_slots_.pop_back();
    }
  }
  CtlPacket packet;
  packet.msg = {CtlType::spawn, 0, c->slot,
                static_cast<std::uint32_t>(std::min<std::size_t>(opt_.max_tasks_per_child, UINT32_MAX)), c->key};
  packet.attach(sv[1]);
  ssize_t r;
  while ((r = ::sendmsg(ctl_->native_handle(), &packet.hdr, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  const int err = errno;
  ::close(sv[1]);
  if (r < 0) {
    ::close(sv[0]);
    if (c->slot >= 0) {
      std::lock_guard lk(m_);
      free_slots_.push_back(c->slot);
    }
    log_->error("{}: cannot ask the fork server for a child: {}", id_, std::strerror(err));
    return;  // a dead server shows as EOF on the control socket
  }
  c->wfd = std::make_shared<Fd>(::fcntl(sv[0], F_DUPFD_CLOEXEC, 0));
  c->sock.emplace(*ctx_, asio::local::stream_protocol(), sv[0]);
  boost::system::error_code ec;
  c->sock->non_blocking(true, ec);
  c->hard.emplace(*ctx_);
  Child& ref = *c;
  {
    std::lock_guard lk(m_);
    c->counted_forking = extra;
    children_.emplace(c->key, std::move(c));
    ++spawned_;
    if (extra) ++extra_forking_;
  }
  read_child(ref);
}

void ProcessPool::read_ctl() {
  ctl_->async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;  // closed by shutdown_on_loop()
    for (;;) {
      CtlMsg m{};
      const ssize_t r = ::recv(ctl_->native_handle(), &m, sizeof m, MSG_DONTWAIT);
      if (r == sizeof m) {
        on_ctl(m);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return server_gone(r == 0 ? "it exited" : std::string("its socket failed: ") + std::strerror(errno));
    }
    read_ctl();
  });
}

void ProcessPool::on_ctl(const CtlMsg& m) {
  switch (m.type) {
    case CtlType::spawned: {
      Child* c = find_key(m.key);
      if (!c) return;
      {
        std::lock_guard lk(m_);
        c->pid = m.pid;
        if (c->state == ChildState::forking) c->state = ChildState::idle;
        if (c->counted_forking) {
          c->counted_forking = false;
          --extra_forking_;
        }
      }
      spawn_failures_ = 0;
      log_->debug("{}: child process {} forked", id_, m.pid);
      pump();
      // An extra child whose critical task another child took meanwhile goes again.
      bool retire = false;
      {
        std::lock_guard lk(m_);
        if (c->extra && c->state == ChildState::idle && queued_[critical] == 0) {
          c->state = ChildState::retiring;
          retire = true;
        }
      }
      if (retire) {
        boost::system::error_code ec;
        c->sock->shutdown(asio::socket_base::shutdown_send, ec);
      }
      return;
    }
    case CtlType::spawn_failed: {
      Child* c = find_key(m.key);
      if (!c) return;
      log_->error("{}: the fork server could not fork a child: {}", id_, std::strerror(m.value));
      erase(*c);
      // Try again later, backing off: forking fails when the system is out of processes or memory.
      const auto wait = std::chrono::milliseconds(std::min(5000, 100 << std::min(spawn_failures_++, 6)));
      retry_->expires_after(wait);
      retry_->async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        replenish();
        pump();
      });
      return;
    }
    case CtlType::exited:
      return on_exit(m.pid, m.value);
    default:
      return;
  }
}

// Waits for the socket to be readable, then reads what is there: no
// speculative read per task while the child works.
void ProcessPool::read_child(Child& c) {
  c.sock->async_wait(asio::socket_base::wait_read, [this, key = c.key](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;
    Child* c = find_key(key);
    if (!c) return;
    bool gone = static_cast<bool>(ec);
    while (!gone) {
      const std::size_t n = c->sock->read_some(asio::buffer(scratch_), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec || n == 0) {
        gone = true;
        break;
      }
      c->in.insert(c->in.end(), scratch_.data(), scratch_.data() + n);
      if (n < scratch_.size()) break;
    }
    if (!c->in.empty()) on_bytes(*c);
    if (!(c = find_key(key))) return;
    if (!gone) return read_child(*c);
    // EOF or error: the child is gone; its exit report settles its task.
    bool idle = false;
    {
      std::lock_guard lk(m_);
      idle = c->state == ChildState::idle;
      if (idle || c->state == ChildState::forking) c->state = ChildState::dying;
    }
    if (idle) replenish();
  });
}

void ProcessPool::on_bytes(Child& c) {
  const std::uint64_t key = c.key;
  std::size_t at = 0;
  for (;;) {
    Child* ch = find_key(key);
    if (!ch) return;
    auto& in = ch->in;
    if (in.size() - at < 4) break;
    const auto len = get<std::uint32_t>(in.data() + at);
    if (len < reply_head || len > max_frame) {
      log_->error("{}: child process {} sent a malformed reply - killing it", id_, ch->pid);
      in.clear();
      return kill_child(*ch, std::make_exception_ptr(ProcessError("its child process sent a malformed reply")),
                        false);
    }
    if (in.size() - at - 4 < len) break;
    const char* p = in.data() + at + 4;
    const auto id = get<std::uint64_t>(p);
    const bool ok = static_cast<std::uint8_t>(p[8]) == reply_ok;
    std::string payload(p + reply_head, len - reply_head);
    at += 4 + len;
    on_reply(*ch, id, ok, payload);
  }
  if (Child* ch = find_key(key)) ch->in.erase(ch->in.begin(), ch->in.begin() + static_cast<std::ptrdiff_t>(at));
}

void ProcessPool::on_reply(Child& c, std::uint64_t id, bool ok, std::string_view payload) {
  ProcessJob* job = nullptr;
  bool retire = false, last = false;
  {
    std::lock_guard lk(m_);
    if (!c.job || c.job_id != id) return;  // killed or canceled meanwhile: the task has ended already
    last = c.last_task;
    job = c.job;
    c.job = nullptr;
    const auto p = index(job->task().priority());
    --running_[p];
    --running_total_;
    ++completed_;
    if (c.exited) {
      c.state = ChildState::dying;
    } else if (c.state == ChildState::busy) {
      if (c.last_task) {
        c.state = ChildState::retiring;  // it exits by itself now
      } else if (c.extra) {
        // Forked for a critical task: it stays only if the pool is short of a child.
        int regular = 0;
        for (auto& [k, o] : children_)
          if (!o->extra && !o->last_task &&
              (o->state == ChildState::forking || o->state == ChildState::idle || o->state == ChildState::busy))
            ++regular;
        if (regular < opt_.pool_size + opt_.reserve_normal + opt_.reserve_high) {
          c.extra = false;
          c.state = ChildState::idle;
        } else {
          c.state = ChildState::retiring;
          retire = true;
        }
      } else {
        c.state = ChildState::idle;
      }
    }
  }
  c.hard->cancel();
  if (retire) {
    boost::system::error_code ec;
    c.sock->shutdown(asio::socket_base::shutdown_send, ec);  // EOF: the child exits
  }
  if (last) replenish();
  pump();  // the next task starts before this one's waiters wake
  if (ok) {
    job->deliver(payload);
  } else {
    const auto nul = payload.find('\0');
    std::string type(payload.substr(0, nul));
    std::string what(nul == std::string_view::npos ? std::string_view{} : payload.substr(nul + 1));
    job->fail(std::make_exception_ptr(ChildError("task #" + std::to_string(id) + " raised in its child process: " +
                                                     type + ": " + what,
                                                 type, what)),
              false);
  }
  job->task().release();
}

void ProcessPool::on_exit(int pid, int status) {
  Child* c = find_pid(pid);
  if (!c) return;
  const std::uint64_t key = c->key;
  {
    std::lock_guard lk(m_);
    c->exited = true;
  }
  // A result written just before the exit is in the socket already: read it first.
  if (c->sock && c->sock->is_open()) {
    boost::system::error_code ec;
    for (;;) {
      const std::size_t n = c->sock->read_some(asio::buffer(scratch_), ec);
      if (ec || n == 0) break;
      c->in.insert(c->in.end(), scratch_.data(), scratch_.data() + n);
    }
    on_bytes(*c);
    if (!(c = find_key(key))) return;
  }
  ProcessJob* job = nullptr;
  bool crashed = false;
  std::uint64_t task_id = 0;
  {
    std::lock_guard lk(m_);
    task_id = c->job_id;
    job = c->job;
    c->job = nullptr;
    if (job) {
      const auto p = index(job->task().priority());
      --running_[p];
      --running_total_;
    }
    if (c->killed) {
      // counted when it was killed
    } else if (c->state == ChildState::retiring && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++recycled_;
    } else {
      ++crashed_;
      crashed = true;
    }
  }
  const std::string how = describe_wait_status(status);
  erase(*c);
  replenish();
  pump();
  if (job) {
    const std::string msg = "task #" + std::to_string(task_id) + " failed: its child process (pid " +
                            std::to_string(pid) + ") crashed: " + how + " before it returned a result";
    log_->warn("{}: {}", id_, msg);
    end_taken(*job,
              std::make_exception_ptr(ChildCrashed(msg, pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                                                   WIFEXITED(status) ? WEXITSTATUS(status) : -1)),
              false);
    job->task().release();
  } else if (crashed) {
    log_->warn("{}: idle child process {} {}", id_, pid, how);
  }
}

void ProcessPool::kill_child(Child& c, std::exception_ptr why, bool canceled) {
  ProcessJob* job = nullptr;
  {
    std::lock_guard lk(m_);
    job = c.job;
    c.job = nullptr;
    if (job) {
      const auto p = index(job->task().priority());
      --running_[p];
      --running_total_;
    }
    c.state = ChildState::dying;
    c.killed = true;
    ++killed_;
  }
  c.hard->cancel();
  send_kill(c.pid, SIGKILL, 0);
  // The books first (a replacement forks, the next task goes out), then the
  // waiters: what they read in info() already agrees.
  replenish();
  pump();
  if (job) {
    end_taken(*job, std::move(why), canceled);
    job->task().release();
  }
}

void ProcessPool::send_kill(int pid, int sig, std::uint64_t task) noexcept {
  if (pid <= 0 || !ctl_ || !ctl_->is_open()) return;
  CtlMsg m{CtlType::kill, pid, sig, 0, task};
  while (::send(ctl_->native_handle(), &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

void ProcessPool::server_gone(const std::string& why) {
  const std::string msg = "its fork server (pid " + std::to_string(server_.pid) + ") " + why;
  {
    std::lock_guard lk(m_);
    if (broken_ || closed_) return;
    broken_ = true;
    broken_why_ = msg;
  }
  log_->error("{}: the process pool is unusable: {}; process tasks fail from now on", id_, msg);
  fail_all("the process pool is unusable: " + msg);
  boost::system::error_code ec;
  ctl_->close(ec);
  ::kill(server_.pid, SIGKILL);  // if it only closed the socket; its children die with it (PR_SET_PDEATHSIG)
  reap_server();
}

// Every queued task ends canceled, every running one failed; the children's
// sockets close (they exit on EOF, or with the server).
void ProcessPool::fail_all(const std::string& why) {
  std::vector<ProcessJob*> queued, running;
  std::vector<std::unique_ptr<Child>> gone;
  {
    std::lock_guard lk(m_);
    for (auto& q : queues_)
      while (ProcessJob* j = q.pop_front()) queued.push_back(j);
    queued_ = {};
    for (auto& [k, c] : children_)
      if (c->job) {
        running.push_back(c->job);
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
  return c.job && c.job_id == id;
}

ProcessPool::Child* ProcessPool::find_key(std::uint64_t key) noexcept {
  auto it = children_.find(key);
  return it == children_.end() ? nullptr : it->second.get();
}

ProcessPool::Child* ProcessPool::find_pid(int pid) noexcept {
  for (auto& [k, c] : children_)
    if (c->pid == pid) return c.get();
  return nullptr;
}

void ProcessPool::erase(Child& c) noexcept {
  std::unique_ptr<Child> gone;
  {
    std::lock_guard lk(m_);
    auto it = children_.find(c.key);
    if (it == children_.end()) return;
    gone = std::move(it->second);
    children_.erase(it);
    if (gone->slot >= 0) free_slots_.push_back(gone->slot);  // a stale id never matches a later task's
    if (gone->counted_forking) --extra_forking_;
  }
  boost::system::error_code ec;
  if (gone->hard) gone->hard->cancel();
  if (gone->sock) gone->sock->close(ec);
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
  return i;
}

}  // namespace atask::detail
