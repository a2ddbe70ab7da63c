#pragma once
// Memory for small fire-and-forget pool nodes. A post() allocates on the
// submitting thread and frees on a pool thread; glibc's malloc makes that
// cross-thread pattern its slow path, and a burst of posts paid one malloc
// per task. Nodes are cut in order from small slabs kept per submitting
// thread and per lane (the task's priority, whose queue is FIFO, so a slab's
// nodes are freed about in the order they were cut and a waiting priority
// pins only its own slabs); a slab is reused when its last node is freed.
// Under AddressSanitizer it is plain new/delete so that use-after-free stays
// detectable.

#include <cstddef>
#include <new>

namespace atask::detail {

inline constexpr std::size_t small_node_size = 96;  // a node header is 32 bytes: room for a callable of 64

inline constexpr std::size_t small_node_lanes = 4;  // one per priority

/// A block of small_node_size bytes from the calling thread's slab for `lane` (< small_node_lanes).
void* small_node_alloc(std::size_t lane);
void small_node_free(void* p) noexcept;

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool small_node_cache = false;
#else
inline constexpr bool small_node_cache = true;
#endif

template <class Node>
void* node_alloc(std::size_t lane) {
  if constexpr (small_node_cache && sizeof(Node) <= small_node_size &&
                alignof(Node) <= alignof(std::max_align_t))
    return small_node_alloc(lane);
  else
    return ::operator new(sizeof(Node));
}

template <class Node>
void node_free(void* p) noexcept {
  if constexpr (small_node_cache && sizeof(Node) <= small_node_size &&
                alignof(Node) <= alignof(std::max_align_t))
    small_node_free(p);
  else
    ::operator delete(p);
}

}  // namespace atask::detail
