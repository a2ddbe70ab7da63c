#pragma once
// The fork server: a single-threaded process forked when the supervisor is
// constructed, before it starts any thread. It forks the pool's children on
// request, kills them on request, reaps them and reports their exit, and
// when its control socket closes (the parent stops or dies) it kills and
// reaps every child and exits. Nothing in it logs or takes a lock the
// parent's threads could have held.
//
// Control socket (SOCK_SEQPACKET, one CtlMsg per packet):
//   parent -> server: spawn (+ the child's socket as SCM_RIGHTS), kill
//   server -> parent: spawned, spawn_failed, exited
//
// Child socket (SOCK_STREAM), frames of [u32 length][payload]:
//   request: u64 task id, u64 entry, u64 fn, i64 soft limit in ns (0 = none),
//            u64 offer, u32 claim index, JSON arguments
//            (offer 0: the task was started by the parent, run it; otherwise it
//            was sent ahead: run it only if the child claims it, see ClaimWord)
//   reply:   u64 task id, u8 kind (reply_ok: JSON result, reply_error: type '\0' message,
//            reply_unsendable: why the result cannot be sent, reply_started: i64
//            steady_clock ns at which the child claimed a task sent ahead, u64 its offer,
//            reply_progress: f64 fraction then the message, while the task runs)

#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

namespace atask::detail {

enum class CtlType : std::uint32_t { spawn = 1, kill = 2, spawned = 3, spawn_failed = 4, exited = 5 };

struct CtlMsg {
  CtlType type;
  std::int32_t pid;    // kill, spawned, exited
  std::int32_t value;  // spawn: stop slot (-1: none); kill: signal; spawn_failed: errno; exited: wait status
  std::uint32_t max_tasks;  // spawn: the child exits after this many tasks (0 = never)
  std::uint64_t key;        // spawn/spawned/spawn_failed: the parent's id of the child; kill: task id
};

/// One control message with room for one descriptor, laid out as sendmsg()
/// and recvmsg() take it.
struct CtlPacket {
  CtlMsg msg{};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{};
  msghdr hdr{};

  CtlPacket() noexcept {
    iov = {&msg, sizeof msg};
    hdr.msg_iov = &iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control;
    hdr.msg_controllen = sizeof control;
  }
  CtlPacket(const CtlPacket&) = delete;
  CtlPacket& operator=(const CtlPacket&) = delete;

  /// Sends `fd` along (SCM_RIGHTS).
  void attach(int fd) noexcept;
  /// The descriptor that came along, or -1.
  int received_fd() noexcept;
};

inline constexpr std::uint8_t reply_ok = 1;
inline constexpr std::uint8_t reply_error = 2;
inline constexpr std::uint8_t reply_unsendable = 3;  // the result cannot be sent as JSON: why
inline constexpr std::uint8_t reply_started = 4;     // a task sent ahead was claimed: when
inline constexpr std::uint8_t reply_progress = 5;    // the running task reported progress
inline constexpr std::uint32_t max_frame = 1u << 30;
inline constexpr std::size_t request_head = 44;  // id, entry, fn, soft, offer, claim index
inline constexpr std::size_t reply_head = 9;     // id, kind

/// A value of type T stored at p (frames are byte strings).
template <class T>
T read_as(const char* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

struct ForkServer {
  pid_t pid = -1;
  int ctl = -1;  // the parent's end of the control socket
};

/// Stop requests: one slot per child in memory shared by the parent and
/// every child (mapped before the server is forked). The parent stores the
/// id of the task whose stop it requests; the child compares it with the
/// task it runs. No signal, no message: nothing interrupts the function.
inline constexpr int stop_slot_count = 1024;
using StopSlot = std::atomic<std::uint64_t>;

/// Tasks sent ahead: each child (by its stop slot) has claim_ring claim
/// words in the same shared memory. The parent stores an offer (a number
/// it never reuses, | claim_stop if the task's stop is requested) in a free
/// word and sends the task with the offer and the word's index. Before it
/// runs such a task the child claims it, CAS offer -> offer | claim_claimed;
/// the parent takes it back (a cancel, a higher priority, an idle child),
/// CAS offer -> 0. Whoever wins decides: a task taken back never runs, a
/// claimed one has started. The child skips a frame whose offer is gone.
///
/// A claimed task runs once the child has written its start report (and
/// the reply before it) and set claim_running, CAS offer | claimed ->
/// offer | claimed | running. Until then a parent about to kill the child
/// for the task before, or canceling this one, may still revoke the claim,
/// CAS offer | claimed -> 0: the task never runs and goes back to its queue.
/// A parent that finds the running bit set knows both reports are in its
/// socket.
inline constexpr int claim_ring = 8;
using ClaimWord = std::atomic<std::uint64_t>;
inline constexpr std::uint64_t claim_claimed = std::uint64_t(1) << 63;
inline constexpr std::uint64_t claim_stop = std::uint64_t(1) << 62;
inline constexpr std::uint64_t claim_running = std::uint64_t(1) << 61;
inline constexpr std::uint64_t claim_offer_mask = ~(claim_claimed | claim_stop | claim_running);

/// Test-only: N > 0 as the fork server is forked makes each of its
/// children stop itself (SIGSTOP) right after its Nth claim of a task sent
/// ahead, before it writes the reply of the task before and the start
/// report: the moment at which a kill for the task before finds the claim
/// made and the task not started. Never set outside tests.
extern std::atomic<int> test_stop_at_claim;

/// Forks the server. `name` becomes its process name ("<name>-fork") and
/// its children's ("<name>-proc"); `slots` (shared, stop_slot_count of
/// them) is what children read their stop requests from, `claims`
/// (shared, stop_slot_count * claim_ring) their claim words. Throws
/// std::system_error when it cannot.
ForkServer start_fork_server(const std::string& name, StopSlot* slots, ClaimWord* claims);

/// Number of threads in this process (from /proc); 0 if unknown.
int thread_count() noexcept;

/// "killed by signal 11 (SIGSEGV)" / "exited with code 3" for a wait status.
std::string describe_wait_status(int status);

}  // namespace atask::detail
