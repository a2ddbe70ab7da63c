#pragma once
// Recycled memory for small fire-and-forget pool nodes. A post() allocates on
// the submitting thread and frees on a pool thread; glibc's malloc makes that
// cross-thread pattern its slow path (it was the top of the profile). Each
// thread keeps a magazine of fixed-size blocks and trades full/empty
// magazines with a shared depot, so the depot's lock is taken once per
// magazine, not once per task. Under AddressSanitizer it is plain new/delete
// so that use-after-free stays detectable.

#include <cstddef>
#include <new>

namespace atask::detail {

inline constexpr std::size_t small_node_size = 96;  // a node header is 32 bytes: room for a callable of 64

void* small_node_alloc();
void small_node_free(void* p) noexcept;

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool small_node_cache = false;
#else
inline constexpr bool small_node_cache = true;
#endif

template <class Node>
void* node_alloc() {
  if constexpr (small_node_cache && sizeof(Node) <= small_node_size &&
                alignof(Node) <= alignof(std::max_align_t))
    return small_node_alloc();
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
