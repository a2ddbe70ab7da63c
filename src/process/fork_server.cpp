// The fork server and the child loop (see fork_server.hpp). Both run
// in processes forked from the program: raw system calls only, no logging,
// no exceptions out, and _exit() rather than exit() so that the program's
// static destructors and atexit handlers never run in a copy of it.

#include "core/child_context.hpp"
#include "process/fork_server.hpp"

#include <atask/process/detail/process_job.hpp>

#include <cxxabi.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <typeinfo>
#include <vector>

namespace atask::detail {

namespace {

static_assert(std::is_same_v<std::chrono::steady_clock::duration, std::chrono::nanoseconds>);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "stop slots are shared between processes: they must be lock-free");

StopSlot* g_slots = nullptr;    // set before the server is forked
ClaimWord* g_claims = nullptr;  // likewise

void set_process_name(const std::string& name) noexcept {
  char buf[16] = {};
  std::strncpy(buf, name.c_str(), sizeof buf - 1);
  ::prctl(PR_SET_NAME, buf, 0, 0, 0);
}

// Keeps 0, 1, 2 and `keep`: the server must not hold the parent's sockets
// and files open (a listening socket would outlive the parent in it).
void close_other_fds(int keep) noexcept {
  if (keep > 3) ::close_range(3, static_cast<unsigned>(keep - 1), 0);
  if (::close_range(static_cast<unsigned>(keep + 1), ~0u, 0) == 0) return;
  for (int fd = 3; fd < 65536; ++fd)  // close_range unavailable: the slow way
    if (fd != keep) ::close(fd);
}

bool write_all(int fd, const void* p, std::size_t n) noexcept {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t r = ::write(fd, c, n);
    if (r > 0) {
      c += r;
      n -= static_cast<std::size_t>(r);
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

std::string demangled(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  std::free(d);
  return out;
}

// The type and message of the exception being handled.
std::string describe_current() {
  std::string type = "unknown exception";
  if (const std::type_info* t = abi::__cxa_current_exception_type()) type = demangled(t->name());
  std::string what;
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "(not a std::exception)";
  }
  type.push_back('\0');
  return type + what;
}

// The child's socket to the parent, for the frames a task writes while it
// runs (progress reports); the lock keeps them whole when the task reports
// from threads of its own, against each other and against the loop's flush.
int g_child_fd = -1;
std::mutex g_child_write;

bool write_progress_frame(double fraction, std::string_view message) noexcept {
  const std::uint64_t id = child::task_id.load(std::memory_order_relaxed);
  if (id == 0 || g_child_fd < 0 || message.size() > max_frame - reply_head - sizeof fraction) return false;
  try {
    std::string f(4 + reply_head + sizeof fraction, '\0');
    const auto total = static_cast<std::uint32_t>(reply_head + sizeof fraction + message.size());
    std::memcpy(f.data(), &total, 4);
    std::memcpy(f.data() + 4, &id, 8);
    f[12] = static_cast<char>(reply_progress);
    std::memcpy(f.data() + 4 + reply_head, &fraction, sizeof fraction);
    f.append(message);
    std::lock_guard lk(g_child_write);
    return write_all(g_child_fd, f.data(), f.size());
  } catch (...) {  // out of memory: the report is lost, the task goes on
    return false;
  }
}

// A child that ends by itself (retired after max_tasks_per_child, or its
// socket closed) writes out what its tasks printed without a newline or a
// flush: _exit() does not flush stdio, and exit() must not run the
// program's atexit handlers and static destructors in a copy of it.
[[noreturn]] void clean_exit() noexcept {
  std::fflush(nullptr);
  ::_exit(0);
}

[[noreturn]] void child_main(int fd, std::uint32_t max_tasks, int slot, pid_t server,
                             const std::string& name) {
  // Dies with the server (a single-threaded process, so the "parent thread"
  // of PR_SET_PDEATHSIG is the whole server); the check closes the race
  // with a server that died before the prctl.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::getppid() != server) ::_exit(1);
  // Its own process group (the server sets it too, whichever runs first):
  // the server kills the whole group, so what the task forks dies with it.
  ::setpgid(0, 0);
  set_process_name(name + "-proc");

  if (g_slots && slot >= 0 && slot < stop_slot_count) child::stop_slot = &g_slots[slot];
  ::signal(SIGPIPE, SIG_IGN);  // a parent that is gone: write() fails with EPIPE and the loop ends
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  ClaimWord* claims =
      g_claims && slot >= 0 && slot < stop_slot_count ? &g_claims[slot * claim_ring] : nullptr;
  g_child_fd = fd;
  child::write_progress = &write_progress_frame;

  // Buffered: one read() usually brings a whole request, often several.
  // `out` holds what is to be written: a reply waits there until the child
  // either blocks for more input or starts the next task, so that a reply
  // and the next task's start report go out in one write().
  std::string buf, out;
  std::size_t at = 0;  // start of the unread bytes in buf
  int claims_made = 0;
  auto flush = [&] {
    if (out.empty()) return;
    bool ok = false;
    {
      std::lock_guard lk(g_child_write);  // (a thread of the last task may still be reporting)
      ok = write_all(fd, out.data(), out.size());
    }
    if (!ok) clean_exit();
    out.clear();
  };
  auto fill = [&](std::size_t need) {
    while (buf.size() - at < need) {
      flush();  // the parent may be waiting for it: never block with a reply unsent
      if (at > 0) {
        buf.erase(0, at);
        at = 0;
      }
      char chunk[64 * 1024];
      const ssize_t r = ::read(fd, chunk, sizeof chunk);
      if (r > 0)
        buf.append(chunk, static_cast<std::size_t>(r));
      else if (!(r < 0 && errno == EINTR))
        return false;  // EOF: the pool closed this child, or the parent is gone
    }
    return true;
  };
  auto put_frame = [&](std::uint64_t id, std::uint8_t kind, std::string_view payload) {
    const auto total = static_cast<std::uint32_t>(reply_head + payload.size());
    const std::size_t head = out.size();
    out.resize(head + sizeof(std::uint32_t) + reply_head);
    std::memcpy(out.data() + head, &total, 4);
    std::memcpy(out.data() + head + 4, &id, 8);
    out[head + 12] = static_cast<char>(kind);
    out.append(payload);
  };
  for (std::uint32_t done = 0; max_tasks == 0 || done < max_tasks;) {
    if (!fill(4)) clean_exit();
    const auto len = read_as<std::uint32_t>(buf.data() + at);
    if (len < request_head || len > max_frame || !fill(4 + std::size_t(len))) clean_exit();
    const std::string_view in(buf.data() + at + 4, len);
    const std::size_t next = at + 4 + std::size_t(len);
    const auto id = read_as<std::uint64_t>(in.data());
    const auto entry = reinterpret_cast<ProcessEntry>(read_as<std::uintptr_t>(in.data() + 8));
    const auto fn = reinterpret_cast<void (*)()>(read_as<std::uintptr_t>(in.data() + 16));
    const auto soft = read_as<std::int64_t>(in.data() + 24);
    const auto offer = read_as<std::uint64_t>(in.data() + 32);
    const auto index = read_as<std::uint32_t>(in.data() + 40);

    bool stop = false;
    ClaimWord* word = nullptr;
    if (offer != 0) {
      // Sent ahead: run it only if this child claims it before the parent takes it back.
      bool mine = false;
      if (claims && index < std::uint32_t(claim_ring)) {
        word = &claims[index];
        std::uint64_t v = word->load();
        while ((v & claim_offer_mask) == offer && !(v & claim_claimed))
          if (word->compare_exchange_weak(v, v | claim_claimed)) {
            mine = true;
            stop = (v & claim_stop) != 0;
            break;
          }
      }
      if (!mine) {  // taken back (canceled, or given to another child): it does not count
        at = next;
        continue;
      }
      struct {
        std::int64_t now;
        std::uint64_t offer;
      } report{std::chrono::steady_clock::now().time_since_epoch().count(), offer};
      static_assert(sizeof report == 16);
      put_frame(id, reply_started, std::string_view(reinterpret_cast<const char*>(&report), sizeof report));
      if (++claims_made == test_stop_at_claim.load(std::memory_order_relaxed)) ::raise(SIGSTOP);
    }
    flush();  // the previous task's reply and this one's start report
    if (word) {
      // Running from here, unless the parent revoked the claim meanwhile (it
      // is killing this child for the task before, or the task was
      // canceled): then it never runs. Both reports are out before the
      // running bit is set, so a parent that finds it set reads them.
      std::uint64_t v = word->load();
      bool run = false;
      while ((v & claim_offer_mask) == offer && (v & claim_claimed) && !(v & claim_running))
        if (word->compare_exchange_weak(v, v | claim_running)) {
          run = true;
          break;
        }
      if (!run) {
        at = next;
        continue;
      }
    }

    if (stop && child::stop_slot) child::stop_slot->store(id, std::memory_order_relaxed);
    child::soft_deadline_ns.store(
        soft > 0 ? std::chrono::steady_clock::now().time_since_epoch().count() + soft : 0,
        std::memory_order_relaxed);
    child::task_id.store(id, std::memory_order_relaxed);
    std::uint8_t kind = reply_ok;
    std::string result;
    try {
      result = entry(fn, in.substr(request_head));
    } catch (const UnsendableResult& e) {
      kind = reply_unsendable;
      result = e.what();
    } catch (...) {
      kind = reply_error;
      result = describe_current();
    }
    child::task_id.store(0, std::memory_order_relaxed);
    at = next;
    ++done;
    put_frame(id, kind, result);
  }
  flush();
  clean_exit();
}

// The pids whose parent is `self`: from /proc/<self>/task/<self>/children
// when the kernel has it, else by reading every /proc/<pid>/stat.
void own_children(pid_t self, std::vector<pid_t>& out) {
  out.clear();
  const std::string me = std::to_string(self);
  if (FILE* f = std::fopen(("/proc/" + me + "/task/" + me + "/children").c_str(), "r")) {
    int pid = 0;
    while (std::fscanf(f, "%d", &pid) == 1) out.push_back(pid);
    std::fclose(f);
    return;
  }
  DIR* d = ::opendir("/proc");
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    const int pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    FILE* f = std::fopen(("/proc/" + std::string(e->d_name) + "/stat").c_str(), "r");
    if (!f) continue;
    char line[512];
    const std::size_t n = std::fread(line, 1, sizeof line - 1, f);
    std::fclose(f);
    line[n] = '\0';
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so after the last ')'.
    const char* close = std::strrchr(line, ')');
    char state = 0;
    int ppid = 0;
    if (close && std::sscanf(close + 1, " %c %d", &state, &ppid) == 2 && ppid == self) out.push_back(pid);
  }
  ::closedir(d);
}

void send_ctl(int ctl, const CtlMsg& m) noexcept {
  while (::send(ctl, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void server_main(int ctl, const std::string& name) {
  // Its own process group: a Ctrl-C in the terminal reaches the parent,
  // which shuts the pool down, not the children in the middle of a task.
  ::setpgid(0, 0);
  // A child subreaper: whatever a task forks and leaves behind - a
  // shell-out's background job, a daemon that called setsid() - becomes
  // the server's child when its own parent dies, not init's, so the server
  // reaps it and kills it at shutdown instead of leaving an orphan.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  set_process_name(name + "-fork");
  close_other_fds(ctl);
  // Default dispositions: a crash handler the program installed (a test
  // framework's, a backtrace printer) must not turn a child's crash into
  // something else, and the parent reports the signal itself.
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_DFL);
  sigset_t chld;
  ::sigemptyset(&chld);
  ::sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, nullptr);
  const int sfd = ::signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  const pid_t self = ::getpid();
  std::set<pid_t> kids;

  // Reaps what has exited. A pool child's process group (it is its
  // leader) is killed first, while the child is still a zombie: what the
  // task forked dies with it, and the group id cannot belong to anyone else
  // yet. Descendants the server adopted (their parent died) are reaped
  // quietly.
  auto reap = [&] {
    for (;;) {
      siginfo_t si{};
      if (::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0) return;
      const pid_t pid = si.si_pid;
      const bool kid = kids.count(pid) > 0;
      if (kid) ::kill(-pid, SIGKILL);
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (kid) {
        kids.erase(pid);
        send_ctl(ctl, {CtlType::exited, pid, status, 0, 0});
      }
    }
  };

  for (;;) {
    pollfd fds[2] = {{ctl, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(fds, sfd >= 0 ? 2 : 1, sfd >= 0 ? -1 : 50) < 0 && errno != EINTR) break;
    if (sfd >= 0 && (fds[1].revents & POLLIN)) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) == sizeof si) {
      }
    }
    reap();  // also without a signalfd: then poll() wakes every 50 ms
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;

    CtlPacket packet;
    const ssize_t r = ::recvmsg(ctl, &packet.hdr, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // the parent closed the pool (or died)
    const CtlMsg& m = packet.msg;
    const int fd = packet.received_fd();

    if (m.type == CtlType::spawn) {
      if (fd < 0) {
        send_ctl(ctl, {CtlType::spawn_failed, 0, EBADF, 0, m.key});
        continue;
      }
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(ctl);
        if (sfd >= 0) ::close(sfd);
        child_main(fd, m.max_tasks, m.value, self, name);
      }
      const int err = errno;
      ::close(fd);
      if (pid < 0) {
        send_ctl(ctl, {CtlType::spawn_failed, 0, err, 0, m.key});
      } else {
        ::setpgid(pid, pid);  // as the child does: the group exists before any kill can name it
        kids.insert(pid);
        send_ctl(ctl, {CtlType::spawned, pid, 0, 0, m.key});
      }
    } else if (m.type == CtlType::kill) {
      if (fd >= 0) ::close(fd);
      // Only its own unreaped children: a pid it reaped may belong to someone else by now.
      // The child and its process group: what the task forked goes with it (the child
      // itself too if the task moved it to another group).
      if (kids.count(m.pid)) {
        ::kill(-m.pid, m.value);
        ::kill(m.pid, m.value);
      }
    } else if (fd >= 0) {
      ::close(fd);
    }
  }

  // Shutdown: no process of the pool's tree outlives the server, none is
  // left a zombie. The children and their groups first; then, until
  // nothing is left, every process the server has as a child: those
  // adopted as subreaper (a descendant that left its group with setsid())
  // and those adopted meanwhile, as their parents die. Each is an unreaped
  // child when it is killed, so no pid here can be someone else's.
  for (pid_t p : kids) {
    ::kill(-p, SIGKILL);
    ::kill(p, SIGKILL);
  }
  std::vector<pid_t> adopted;
  for (;;) {
    own_children(self, adopted);
    for (pid_t p : adopted) ::kill(p, SIGKILL);
    siginfo_t si{};
    if (::waitid(P_ALL, 0, &si, WEXITED | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: nothing left
    }
    // As in reap(): a child's group once more (what it forked after the kill
    // above), while the child is still a zombie.
    if (kids.erase(si.si_pid)) ::kill(-si.si_pid, SIGKILL);
    int status = 0;
    while (::waitpid(si.si_pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ::_exit(0);
}

}  // namespace

void CtlPacket::attach(int fd) noexcept {
  cmsghdr* c = CMSG_FIRSTHDR(&hdr);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
}

int CtlPacket::received_fd() noexcept {
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c; c = CMSG_NXTHDR(&hdr, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

std::atomic<int> test_stop_at_claim{0};

ForkServer start_fork_server(const std::string& name, StopSlot* slots, ClaimWord* claims) {
  g_slots = slots;
  g_claims = claims;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw std::system_error(errno, std::generic_category(), "socketpair");
  // Output still buffered in the parent would be written again by a copy.
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    throw std::system_error(err, std::generic_category(), "fork");
  }
  if (pid == 0) {
    ::close(sv[0]);
    try {
      server_main(sv[1], name);
    } catch (...) {
    }
    ::_exit(1);
  }
  ::close(sv[1]);
  return {pid, sv[0]};
}

int thread_count() noexcept {
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return 0;
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = ::sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (abbrev ? " (SIG" + std::string(abbrev) + ")" : "") +
           (WCOREDUMP(status) ? ", core dumped" : "");
  }
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  return "ended with wait status " + std::to_string(status);
}

}  // namespace atask::detail
