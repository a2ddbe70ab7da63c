// The process pool's tasks sent ahead (ProcessPoolOptions::prefetch): a
// busy child holds the next tasks so it starts one as soon as it finishes
// the last; the claim words settle whether a held task is taken back or
// runs. Taking back, requeueing and rebalancing what children hold. The
// design is in process_pool.hpp.

#include "process/process_pool.hpp"

namespace atask::detail {

namespace {

constexpr std::size_t critical = index(Priority::critical);

}  // namespace

ClaimWord& ProcessPool::claim_word(const Child& c, int index) const noexcept {
  return claims_[std::size_t(c.slot) * claim_ring + std::size_t(index)];
}

// A child that may hold one more task ahead: busy with a task it will
// finish by itself, a claim word free, and room under max_tasks_per_child.
bool ProcessPool::can_hold_locked(const Child& c) const noexcept {
  return c.state == ChildState::busy && !c.extra && !c.last_task && !c.exited && !c.killed && !c.canceling &&
         c.slot >= 0 && c.held.size() < std::size_t(opt_.prefetch) && c.ring_used != (1u << claim_ring) - 1 &&
         (opt_.max_tasks_per_child == 0 || c.sent + c.held.size() < opt_.max_tasks_per_child);
}

bool ProcessPool::prefetch_room_locked() const noexcept {
  if (opt_.prefetch <= 0) return false;
  for (auto& [k, c] : children_)
    if (can_hold_locked(*c)) return true;
  return false;
}

// Sends ahead the tasks at the head of the highest waiting priority, to the
// busy children holding the fewest, while that priority would be admitted
// when they finish their task (a held task takes its child's place: the
// running count stays as it is). Never a critical task: it gets a child of
// its own.
void ProcessPool::prefetch_locked(std::vector<Ahead>& out) {
  if (opt_.prefetch <= 0 || closed_ || broken_) return;
  for (;;) {
    int p = -1;
    for (int i = int(priority_count) - 1; i >= 0; --i)
      if (!queues_[i].empty()) {
        p = i;
        break;
      }
    if (p < 0 || std::size_t(p) == critical || running_total_ > limit_for(std::size_t(p))) return;
    Child* best = nullptr;
    for (auto& [k, c] : children_)
      if (can_hold_locked(*c) && (!best || c->held.size() < best->held.size())) best = c.get();
    if (!best) return;
    ProcessJob* job = queues_[p].head;
    while (job && job->no_prefetch) job = job->q_next;
    if (!job) return;
    queues_[p].remove(job);
    int index = 0;
    while (best->ring_used & (1u << index)) ++index;
    best->ring_used |= 1u << index;
    const std::uint64_t offer = ++next_offer_;
    const std::uint64_t id = job->task().id();
    claim_word(*best, index)
        .store(offer | (job->task().stop_token().stop_requested() ? claim_stop : 0),
               std::memory_order_relaxed);
    best->held.push_back({job, id, offer, index});
    job->held_by = best->key;
    ++held_total_;
    job->task().add_ref();  // the sender's, while the loop writes it outside the lock
    out.push_back({job, best->key, id, best->next_seq++, offer, index, best->wfd});
  }
}

// `n` tasks for one child, taken in a row (consecutive request numbers).
void ProcessPool::send_ahead(Ahead* a, std::size_t n) {
  std::string frames;
  for (std::size_t i = 0; i < n; ++i) {
    // The arguments stay in the parent: the task may be taken back and sent again.
    frames += request(*a[i].job, a[i].id, a[i].offer, a[i].index);
    a[i].job->task().release();  // the sender's
  }
  if (a[0].fd->put(a[0].seq, std::move(frames), n))
    if (Child* c = find_key(a[0].key)) flush_child(*c);
}

// Takes held task i back from its child (CAS -> 0): the task, which the
// child will skip, or nullptr when the child claimed it first. With
// `revoke_claimed` a claim the child has not marked running yet is revoked
// too (the task never runs); nullptr then means it runs.
ProcessJob* ProcessPool::take_back_locked(Child& c, std::size_t i, bool revoke_claimed) noexcept {
  Held& h = c.held[i];
  if (h.claimed) return nullptr;
  ClaimWord& w = claim_word(c, h.index);
  std::uint64_t v = w.load();
  while ((v & claim_offer_mask) == h.offer && !(v & claim_running) &&
         (revoke_claimed || !(v & claim_claimed)))
    if (w.compare_exchange_weak(v, 0)) {
      ProcessJob* j = h.job;
      c.ring_used &= ~(1u << h.index);
      --held_total_;
      j->held_by = 0;
      c.held.erase(c.held.begin() + std::ptrdiff_t(i));
      return j;
    }
  if ((v & claim_offer_mask) == h.offer && (v & claim_running)) h.claimed = true;
  return nullptr;
}

// A busy child left with no task and none ahead (all taken back) is idle:
// it skips what it was sent and waits for the next request.
void ProcessPool::idle_if_free_locked(Child& c) noexcept {
  if (c.state == ChildState::busy && !c.job && c.held.empty()) c.state = ChildState::idle;
}

// Back at the front of its queue, in its place: still queued, never started.
void ProcessPool::requeue_locked(ProcessJob* j) noexcept {
  queues_[index(j->task().priority())].insert_sorted(j);
}

// A child going away: every task it holds ahead and has not started goes
// back to its queue (claimed or not); the ones it started running are
// returned, out of the books.
std::vector<ProcessPool::Held> ProcessPool::take_back_all_locked(Child& c) noexcept {
  std::vector<Held> ran;
  for (std::size_t i = c.held.size(); i-- > 0;) {
    if (ProcessJob* j = take_back_locked(c, i, true)) {
      requeue_locked(j);
      continue;
    }
    Held h = c.held[i];
    c.held.erase(c.held.begin() + std::ptrdiff_t(i));
    c.ring_used &= ~(1u << h.index);
    --held_total_;
    --queued_[index(h.job->task().priority())];
    h.job->held_by = 0;
    ran.push_back(h);
  }
  return ran;
}

// Ends tasks a child claimed from ahead and never reported done: they ran.
void ProcessPool::end_ran(std::vector<Held>& ran,
                          const std::function<std::exception_ptr(const Held&)>& why) noexcept {
  for (Held& h : ran) {
    h.job->task().try_start();  // a cancel may have marked it started already
    h.job->fail(why(h), h.cancel);
    h.job->task().release();
  }
  ran.clear();
}

// Held tasks come back to their queue when
//  - a higher priority waits (not critical, which gets a child of its own):
//    the lower ones held ahead would otherwise start before it;
//  - a child is idle and could take them: they would otherwise wait for
//    their busy child. True when such tasks came back (dispatch again).
bool ProcessPool::rebalance_locked() {
  if (held_total_ == 0 || closed_ || broken_) return false;
  int top = -1;
  for (int i = int(critical) - 1; i >= 0; --i)
    if (!queues_[i].empty()) {
      top = i;
      break;
    }
  bool idle = false;
  for (auto& [k, c] : children_) idle = idle || c->state == ChildState::idle;
  bool back = false;
  for (auto& [k, c] : children_)
    for (std::size_t i = c->held.size(); i-- > 0;) {
      const auto p = int(index(c->held[i].job->task().priority()));
      const bool lower = p < top;
      const bool for_idle = idle && running_total_ < limit_for(std::size_t(p));
      if (!lower && !for_idle) continue;
      if (ProcessJob* j = take_back_locked(*c, i, false)) {
        requeue_locked(j);
        back = back || for_idle;
      }
    }
  for (auto& [k, c] : children_) {
    const bool was_idle = c->state == ChildState::idle;
    idle_if_free_locked(*c);
    back = back || (!was_idle && c->state == ChildState::idle);
  }
  return back;
}

}  // namespace atask::detail
