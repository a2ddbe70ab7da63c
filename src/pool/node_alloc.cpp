#include <atask/pool/detail/node_alloc.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace atask::detail {

namespace {

// Nodes are cut from slabs, in order, by the thread that allocates them
// (one slab at a time per lane): a burst of post()s writes consecutive nodes,
// which the pool threads then read in that order, and costs one slab per
// `slab_nodes` tasks instead of one malloc each. Each slab counts its nodes
// still alive, as if all of them had been handed out; the allocating thread
// takes back the ones it never handed out when it leaves the slab, and
// whoever brings the count to 0 recycles the slab. A node still queued pins
// its slab: with one lane per priority, the nodes of a slab wait in one FIFO
// queue, so a priority that waits pins its own (full) slabs, not others'.
constexpr std::size_t slab_bytes = 16 * 1024;  // aligned to its size: a node finds its slab by masking
constexpr std::size_t slab_head = 64;          // the count, on a line of its own
constexpr std::size_t slab_nodes = (slab_bytes - slab_head) / small_node_size;
constexpr std::size_t spare_limit = 64;  // empty slabs kept for reuse (1 MiB); beyond, freed

struct Slab {
  std::atomic<std::int64_t> alive;
  char* node(std::size_t i) noexcept {
    return reinterpret_cast<char*>(this) + slab_head + i * small_node_size;
  }
};
static_assert(slab_head >= sizeof(Slab));

Slab* slab_of(void* p) noexcept {
  return reinterpret_cast<Slab*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t(slab_bytes - 1));
}

struct Spares {
  std::mutex m;
  std::vector<Slab*> slabs;
  ~Spares() {
    for (Slab* s : slabs) ::operator delete(s, std::align_val_t(slab_bytes));
  }
};

Spares& spares() {
  static Spares s;  // outlives every thread's slab (constructed before them, destroyed after main)
  return s;
}

void recycle(Slab* s) noexcept {
  auto& sp = spares();
  {
    std::lock_guard lk(sp.m);
    if (sp.slabs.size() < spare_limit) {
      sp.slabs.push_back(s);  // capacity reserved: does not allocate
      return;
    }
  }
  ::operator delete(s, std::align_val_t(slab_bytes));
}

// Drops `n` of the slab's count; the one that reaches 0 recycles it.
void release(Slab* s, std::int64_t n) noexcept {
  if (n > 0 && s->alive.fetch_sub(n, std::memory_order_acq_rel) == n) recycle(s);
}

Slab* fresh_slab() {
  Slab* s = nullptr;
  {
    auto& sp = spares();
    std::lock_guard lk(sp.m);
    if (!sp.slabs.empty()) {
      s = sp.slabs.back();
      sp.slabs.pop_back();
    }
  }
  if (!s) s = static_cast<Slab*>(::operator new(slab_bytes, std::align_val_t(slab_bytes)));
  // (Its last user's release() synchronised with this thread through the spares' lock.)
  s->alive.store(static_cast<std::int64_t>(slab_nodes), std::memory_order_relaxed);
  return s;
}

struct Lane {
  Slab* cur = nullptr;
  std::size_t next = 0;  // nodes of cur handed out
  void leave() noexcept {
    if (cur) release(cur, static_cast<std::int64_t>(slab_nodes - next));
    cur = nullptr;
  }
};

struct ThreadSlabs {
  Lane lanes[small_node_lanes];
  ThreadSlabs() {
    auto& sp = spares();  // constructed first, so destroyed after us
    std::lock_guard lk(sp.m);
    sp.slabs.reserve(spare_limit);
  }
  ~ThreadSlabs() {
    for (Lane& l : lanes) l.leave();
  }
};

thread_local ThreadSlabs tls;

}  // namespace

void* small_node_alloc(std::size_t lane) {
  Lane& l = tls.lanes[lane];
  if (!l.cur || l.next == slab_nodes) {
    l.leave();
    l.cur = fresh_slab();
    l.next = 0;
  }
  return l.cur->node(l.next++);
}

void small_node_free(void* p) noexcept {
  release(slab_of(p), 1);
}

}  // namespace atask::detail
