// The process pool's children and the fork server's reports, on the
// supervisor's loop thread: forking and replacing children, reading their
// replies, settling crashes, kills and recycling. Queueing and dispatch are
// in process_pool.cpp; the design is in process_pool.hpp.

#include "process/process_pool.hpp"

#include "core/child_context.hpp"

#include <atask/core/errors.hpp>

#include <boost/asio/write.hpp>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>

namespace asio = boost::asio;

namespace atask::detail {

namespace {
constexpr std::size_t critical = index(Priority::critical);
}  // namespace

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
                static_cast<std::uint32_t>(std::min<std::size_t>(opt_.max_tasks_per_child, UINT32_MAX)),
                c->key};
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
      // EOF: the server is gone; server_gone() says how from its wait status.
      return server_gone(r == 0 ? std::string() : std::string("its socket failed: ") + std::strerror(errno));
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
    const auto len = read_as<std::uint32_t>(in.data() + at);
    if (len < reply_head || len > max_frame) {
      log_->error("{}: child process {} sent a malformed reply - killing it", id_, ch->pid);
      in.clear();
      return kill_child(
          *ch, std::make_exception_ptr(ProcessError("its child process sent a malformed reply")), false);
    }
    if (in.size() - at - 4 < len) break;
    const char* p = in.data() + at + 4;
    const auto id = read_as<std::uint64_t>(p);
    const auto kind = static_cast<std::uint8_t>(p[8]);
    if (kind == reply_progress) {  // the running task's report: for whoever listens
      if (len - reply_head >= sizeof(double))
        if (auto sink = child_progress_sink.load(std::memory_order_acquire))
          sink(id, read_as<double>(p + reply_head),
               std::string_view(p + reply_head + sizeof(double), len - reply_head - sizeof(double)));
      at += 4 + len;
      continue;
    }
    if (kind == reply_started) {
      const auto claimed_ns = len - reply_head >= 8 ? read_as<std::int64_t>(p + reply_head) : 0;
      const auto offer = len - reply_head >= 16 ? read_as<std::uint64_t>(p + reply_head + 8) : 0;
      at += 4 + len;
      on_started(*ch, id, claimed_ns, offer);
      continue;
    }
    std::string payload(p + reply_head, len - reply_head);
    at += 4 + len;
    on_reply(*ch, id, kind, payload);
  }
  if (Child* ch = find_key(key))
    ch->in.erase(ch->in.begin(), ch->in.begin() + static_cast<std::ptrdiff_t>(at));
  // Refill what the children hold ahead once for all the replies read.
  if (pump_later_) {
    pump_later_ = false;
    pump();
  }
}

// A task held ahead was claimed by its child at `claimed_ns` (steady_clock)
// under `offer`: it has started; its hard time limit counts from then. A
// claim the parent revoked (the task went back to its queue, or was
// canceled) matches no held offer: the child skips that task.
void ProcessPool::on_started(Child& c, std::uint64_t id, std::int64_t claimed_ns, std::uint64_t offer) {
  ProcessJob* job = nullptr;
  bool cancel = false;
  int slot = -1;
  {
    std::lock_guard lk(m_);
    if (c.job) {
      // Cannot happen (the reply of the task before comes first); if it did, the task dies with the
      // child and kill_child() ends it as a task that ran.
      for (Held& h : c.held)
        if (h.offer == offer && h.id == id) h.claimed = true;
      return;
    }
    for (std::size_t i = 0; i < c.held.size(); ++i)
      if (c.held[i].offer == offer && c.held[i].id == id) {
        const Held h = c.held[i];
        c.held.erase(c.held.begin() + std::ptrdiff_t(i));
        // Its claim word stays taken until its reply: the child sets claim_running in it after this
        // report, and a new offer stored there meanwhile would make it skip the task.
        c.job_ring = h.index;
        --held_total_;
        job = h.job;
        job->held_by = 0;
        cancel = h.cancel;
        break;
      }
    if (!job) return;  // a revoked claim: the child skips the task
    const auto p = index(job->task().priority());
    --queued_[p];
    ++running_[p];
    ++running_total_;
    c.job = job;
    c.job_id = id;
    job->child_pid.store(c.pid, std::memory_order_relaxed);
    ++c.sent;
    c.last_task = opt_.max_tasks_per_child > 0 && c.sent >= opt_.max_tasks_per_child;
    c.canceling = cancel;
    if (c.state == ChildState::idle) c.state = ChildState::busy;
    slot = c.slot;
  }
  pump_later_ = true;       // room ahead again
  job->task().try_start();  // a cancel that found it claimed may have done so already
  std::string().swap(job->args);
  if (slot >= 0 && job->task().stop_token().stop_requested())
    slots_[slot].store(id, std::memory_order_relaxed);
  if (cancel) {
    // cancel() came after the claim and said true: it ends canceled. The kill waits until the rest of
    // what was read is handled: its reply may be right behind (then no kill is needed).
    job->task().add_ref();
    asio::post(*ctx_, [this, r = Ref<TaskStateBase>::adopt(&job->task()), j = job] { kill_canceled(j); });
    return;
  }
  const auto lim = hard_limit(*job);
  if (lim.count() > 0)
    arm_limit(c, lim,
              claimed_ns > 0 ? std::chrono::steady_clock::time_point(std::chrono::nanoseconds(claimed_ns))
                             : std::chrono::steady_clock::now());
}

void ProcessPool::on_reply(Child& c, std::uint64_t id, std::uint8_t kind, std::string_view payload) {
  ProcessJob* job = nullptr;
  bool retire = false, last = false, idle = false, canceled = false;
  {
    std::lock_guard lk(m_);
    // Killed meanwhile: the task has ended already.
    if (!c.job || c.job_id != id) return;
    // A cancel claimed it (cancel() returned true) and its kill is on its way: it ends canceled, and
    // the kill, no longer needed, is not made (kill_canceled() finds the task over). The child is done
    // with it and goes on.
    canceled = c.canceling;
    c.canceling = false;
    last = c.last_task;
    job = c.job;
    c.job = nullptr;
    if (c.job_ring >= 0) {  // its claim word is free again
      c.ring_used &= ~(1u << c.job_ring);
      c.job_ring = -1;
    }
    const auto p = index(job->task().priority());
    --running_[p];
    --running_total_;
    ++completed_;  // a reply came back (a canceled task's too: see completed_total)
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
              (o->state == ChildState::forking || o->state == ChildState::idle ||
               o->state == ChildState::busy))
            ++regular;
        if (regular < opt_.pool_size + opt_.reserve_normal + opt_.reserve_high) {
          c.extra = false;
          c.state = ChildState::idle;
        } else {
          c.state = ChildState::retiring;
          retire = true;
        }
      } else if (c.held.empty()) {
        c.state = ChildState::idle;
      }
    }
    idle = c.state == ChildState::idle;
  }
  c.hard->cancel();
  if (retire) {
    boost::system::error_code ec;
    c.sock->shutdown(asio::socket_base::shutdown_send, ec);  // EOF: the child exits
  }
  if (last) replenish();
  // An idle child gets the next task before this one's waiters wake; one
  // that holds tasks ahead goes on by itself, and what it holds is refilled
  // once for every reply read (on_bytes()).
  if (idle || last || retire)
    pump();
  else
    pump_later_ = true;
  if (canceled) {
    job->fail(std::make_exception_ptr(TaskCanceled("task #" + std::to_string(id) +
                                                   " was canceled while running (its result, which came "
                                                   "after the cancel, was dropped)")),
              true);
  } else if (kind == reply_ok) {
    job->deliver(payload);
  } else if (kind == reply_unsendable) {
    job->fail(std::make_exception_ptr(
                  ProcessError("task #" + std::to_string(id) + " failed: " + std::string(payload))),
              false);
  } else {
    const auto nul = payload.find('\0');
    std::string type(payload.substr(0, nul));
    std::string what(nul == std::string_view::npos ? std::string_view{} : payload.substr(nul + 1));
    job->fail(std::make_exception_ptr(ChildError(
                  "task #" + std::to_string(id) + " raised in its child process: " + type + ": " + what, type,
                  what)),
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
  bool crashed = false, canceling = false;
  std::uint64_t task_id = 0;
  std::vector<Held> ran;  // claimed from ahead, start report never written: it ran
  {
    std::lock_guard lk(m_);
    ran = take_back_all_locked(*c);  // the rest goes back to the front of its queue
    task_id = c->job_id;
    job = c->job;
    c->job = nullptr;
    canceling = c->canceling;
    if (job) {
      const auto p = index(job->task().priority());
      --running_[p];
      --running_total_;
    }
    if (c->killed) {
      // counted when it was killed
    } else if ((c->state == ChildState::retiring || (c->last_task && (!job || canceling))) &&
               WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      // Retiring: its last reply came before its exit. Or the exit was
      // reported first and the reply drained from the socket above (the
      // reply then finds it exited and marks it dying): a recycle either way
      // - or an extra child going again, counted apart.
      if (c->extra)
        ++extra_retired_;
      else
        ++recycled_;
    } else {
      ++crashed_;
      crashed = true;
    }
  }
  const std::string how = describe_wait_status(status);
  // The task's info says which child ran it and how that child ended.
  auto note_end = [&](ProcessJob& j) {
    j.child_pid.store(pid, std::memory_order_relaxed);
    j.exit_signal.store(WIFSIGNALED(status) ? WTERMSIG(status) : 0, std::memory_order_relaxed);
    j.exit_code.store(WIFEXITED(status) ? WEXITSTATUS(status) : -1, std::memory_order_relaxed);
  };
  if (job) note_end(*job);
  for (Held& h : ran) note_end(*h.job);
  erase(*c);
  replenish();
  pump();
  if (job && canceling) {  // cancel() claimed it: it ends canceled, however its child ended
    end_taken(*job,
              std::make_exception_ptr(TaskCanceled("task #" + std::to_string(task_id) +
                                                   " was canceled while running: its child process (pid " +
                                                   std::to_string(pid) + ") " + how)),
              true);
    job->task().release();
  } else if (job) {
    const std::string msg = "task #" + std::to_string(task_id) + " failed: its child process (pid " +
                            std::to_string(pid) + ") crashed: " + how + " before it returned a result";
    log_->warn("{}: {}", id_, msg);
    end_taken(*job,
              std::make_exception_ptr(ChildCrashed(msg, pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                                                   WIFEXITED(status) ? WEXITSTATUS(status) : -1)),
              false);
    job->task().release();
  } else if (crashed && ran.empty()) {
    log_->warn("{}: idle child process {} {}", id_, pid, how);
  }
  end_ran(ran, [&](const Held& h) -> std::exception_ptr {
    if (h.cancel)
      return std::make_exception_ptr(TaskCanceled("task #" + std::to_string(h.id) +
                                                  " was canceled while running: its child process (pid " +
                                                  std::to_string(pid) + ") " + how));
    const std::string msg = "task #" + std::to_string(h.id) + " failed: its child process (pid " +
                            std::to_string(pid) + ") crashed: " + how + " before it returned a result";
    log_->warn("{}: {}", id_, msg);
    return std::make_exception_ptr(ChildCrashed(msg, pid, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                                                WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  });
}

// Reads what the child has written and handles it, without waiting.
void ProcessPool::drain(Child& c) {
  if (!c.sock || !c.sock->is_open()) return;
  boost::system::error_code ec;
  for (;;) {
    const std::size_t n = c.sock->read_some(asio::buffer(scratch_), ec);
    if (ec || n == 0) break;  // would_block, EOF (read_child() sees it too), an error
    c.in.insert(c.in.end(), scratch_.data(), scratch_.data() + n);
    if (n < scratch_.size()) break;
  }
  if (!c.in.empty()) on_bytes(c);
}

// Before a kill of child `key` for its task `id` (a time limit, or a cancel
// when `canceling`): the kill must fail that task only. So first what the
// child wrote is read: a reply that came in time ends its task with its
// value (or canceled, for a cancel), and the task the child then started
// runs on. Then every task the child holds ahead and has not started
// running is taken back - claimed or not, it goes back to the front of its
// queue. If one runs already, its start report and the reply before it are
// in the socket (the child sets claim_running after writing them): read
// again. The child, if the kill is still needed; else nullptr.
ProcessPool::Child* ProcessPool::settle_before_kill(std::uint64_t key, std::uint64_t id, bool canceling) {
  auto still = [&](Child* c) {
    if (!c) return false;
    std::lock_guard lk(m_);
    return c->job && c->job_id == id && c->canceling == canceling;
  };
  bool requeued = false;
  Child* c = find_key(key);
  for (int round = 0; round < 2; ++round) {
    if (c) drain(*c);
    c = find_key(key);
    if (!still(c)) {
      if (requeued) pump();
      return nullptr;
    }
    bool running = false;
    {
      std::lock_guard lk(m_);
      for (std::size_t i = c->held.size(); i-- > 0;) {
        if (ProcessJob* j = take_back_locked(*c, i, true)) {
          requeue_locked(j);
          requeued = true;
        } else {
          running = true;
        }
      }
    }
    if (!running) break;
  }
  return c;  // kill_child() pumps what came back
}

// Loop thread: the kill for a cancel that claimed the running task `j`.
void ProcessPool::kill_canceled(ProcessJob* j) {
  Child* c = child_running(j);
  if (!c) return;  // over already: its reply or its child's end settled it, canceled
  c = settle_before_kill(c->key, j->task().id(), true);
  if (!c) return;
  kill_child(*c,
             std::make_exception_ptr(TaskCanceled("task #" + std::to_string(j->task().id()) +
                                                  " was canceled while running: its child process (pid " +
                                                  std::to_string(c->pid) + ") was killed")),
             true);
}

void ProcessPool::kill_child(Child& c, std::exception_ptr why, bool canceled) {
  ProcessJob* job = nullptr;
  std::vector<Held> ran;
  {
    std::lock_guard lk(m_);
    ran = take_back_all_locked(c);  // held ahead: back to the front of its queue, for another child
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
  // The task's info: its child ends by the pool's SIGKILL (reaped later, by then without a task).
  auto note_kill = [&](ProcessJob& j) {
    j.child_pid.store(c.pid, std::memory_order_relaxed);
    j.exit_signal.store(SIGKILL, std::memory_order_relaxed);
  };
  if (job) note_kill(*job);
  for (Held& h : ran) note_kill(*h.job);
  // The books first (a replacement forks, the next task goes out), then the
  // waiters: what they read in info() already agrees.
  replenish();
  pump();
  if (job) {
    end_taken(*job, std::move(why), canceled);
    job->task().release();
  }
  // Claimed from ahead after the task the kill was for (whose reply is not read): killed with it.
  const int pid = c.pid;
  end_ran(ran, [&](const Held& h) -> std::exception_ptr {
    if (h.cancel)
      return std::make_exception_ptr(TaskCanceled("task #" + std::to_string(h.id) +
                                                  " was canceled while running: its child process (pid " +
                                                  std::to_string(pid) + ") was killed"));
    return std::make_exception_ptr(
        ChildCrashed("task #" + std::to_string(h.id) + " failed: its child process (pid " +
                         std::to_string(pid) + ") was killed (for another task) before it returned a result",
                     pid, SIGKILL, -1));
  });
}

void ProcessPool::send_kill(int pid, int sig, std::uint64_t task) noexcept {
  if (pid <= 0 || !ctl_ || !ctl_->is_open()) return;
  CtlMsg m{CtlType::kill, pid, sig, 0, task};
  while (::send(ctl_->native_handle(), &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

// `why` empty: its control socket reached EOF, so the server is ending;
// reaping it tells how ("exited with code 1", "was killed by signal 9 (Killed)").
void ProcessPool::server_gone(const std::string& why) {
  const int pid = server_.pid;
  {
    std::lock_guard lk(m_);
    if (broken_ || closed_) return;
    broken_ = true;  // info() stops reading server_ before reap_server() writes it
    broken_why_ = "its fork server (pid " + std::to_string(pid) + ") is gone";
  }
  boost::system::error_code ec;
  ctl_->close(ec);
  if (!why.empty()) ::kill(pid, SIGKILL);  // its children die with it (PR_SET_PDEATHSIG)
  const std::optional<int> status = reap_server();
  std::string how = why;
  if (how.empty()) {
    if (!status)
      how = "closed its control socket";
    else if (WIFSIGNALED(*status))
      how = "was killed by signal " + std::to_string(WTERMSIG(*status)) + " (" +
            ::strsignal(WTERMSIG(*status)) + ")";
    else if (WIFEXITED(*status))
      how = "exited with code " + std::to_string(WEXITSTATUS(*status));
    else
      how = "ended with wait status " + std::to_string(*status);
  }
  const std::string msg = "its fork server (pid " + std::to_string(pid) + ") " + how;
  {
    std::lock_guard lk(m_);
    broken_why_ = msg;
  }
  log_->error("{}: the process pool is unusable: {}; process tasks fail from now on", id_, msg);
  fail_all("the process pool is unusable: " + msg);
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

}  // namespace atask::detail
