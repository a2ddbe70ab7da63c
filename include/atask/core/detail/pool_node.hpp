#pragma once
// The unit a ThreadPool queues. Nodes are intrusive (the pool links them into
// its per-priority lists) so that a queued task costs one allocation in all,
// and a canceled queued task can be unlinked in O(1).

#include <atask/core/priority.hpp>

#include <atomic>

namespace atask::detail {

class PoolNode {
 public:
  explicit PoolNode(Priority p) noexcept : priority_(p) {}
  PoolNode(const PoolNode&) = delete;
  PoolNode& operator=(const PoolNode&) = delete;

  /// Runs on a pool thread. May throw; the pool reports it to its error handler.
  virtual void run() = 0;
  /// The pool drops the node without running it (a stopping pool that cancels
  /// its queue). Called instead of run().
  virtual void discard() noexcept = 0;
  /// The pool is done with its reference (after run() or discard()).
  virtual void release() noexcept = 0;

  Priority priority() const noexcept { return priority_; }

 protected:
  virtual ~PoolNode() = default;

 private:
  friend class NodeList;
  friend class Inbox;
  PoolNode* prev_ = nullptr;
  PoolNode* next_ = nullptr;
  Priority priority_;
  bool linked_ = false;
};

/// Doubly linked FIFO of nodes; the owner synchronises access.
class NodeList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }

  void push_back(PoolNode* n) noexcept {
    n->prev_ = tail_;
    n->next_ = nullptr;
    n->linked_ = true;
    if (tail_)
      tail_->next_ = n;
    else
      head_ = n;
    tail_ = n;
  }

  PoolNode* pop_front() noexcept {
    PoolNode* n = head_;
    if (n) unlink(n);
    return n;
  }

  /// Unlinks n if it is in a list (this one: the caller knows which).
  bool remove(PoolNode* n) noexcept {
    if (!n->linked_) return false;
    unlink(n);
    return true;
  }

 private:
  void unlink(PoolNode* n) noexcept {
    if (n->prev_)
      n->prev_->next_ = n->next_;
    else
      head_ = n->next_;
    if (n->next_)
      n->next_->prev_ = n->prev_;
    else
      tail_ = n->prev_;
    n->prev_ = n->next_ = nullptr;
    n->linked_ = false;
  }
  PoolNode* head_ = nullptr;
  PoolNode* tail_ = nullptr;
};

/// Lock-free multi-producer inbox: submitters push without the pool's lock;
/// whoever holds the lock takes everything at once. A stack whose whole
/// content is taken by one exchange has no ABA problem (nothing pops single
/// nodes). A node uses the same `next_` link here as in a NodeList: it is in
/// one or the other, never both.
class Inbox {
 public:
  /// seq_cst: the pool's lost-wakeup argument pairs this with the read of
  /// its `searching` count (see ThreadPool::enqueue).
  void push(PoolNode* n) noexcept {
    PoolNode* h = head_.load(std::memory_order_relaxed);
    do {
      n->next_ = h;
    } while (!head_.compare_exchange_weak(h, n, std::memory_order_seq_cst, std::memory_order_relaxed));
  }

  bool empty() const noexcept { return head_.load(std::memory_order_seq_cst) == nullptr; }

  /// Calls fn(node) for everything pushed so far, oldest first.
  template <class Fn>
  void drain(Fn&& fn) {
    PoolNode* n = head_.exchange(nullptr, std::memory_order_acquire);
    PoolNode* fifo = nullptr;
    while (n) {  // the stack is newest first: reverse it
      PoolNode* next = n->next_;
      n->next_ = fifo;
      fifo = n;
      n = next;
    }
    while (fifo) {
      PoolNode* next = fifo->next_;
      fifo->next_ = nullptr;
      fn(fifo);
      fifo = next;
    }
  }

 private:
  std::atomic<PoolNode*> head_{nullptr};
};

}  // namespace atask::detail
