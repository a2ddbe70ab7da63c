// The small-node slabs behind ThreadPool::post(): nodes cut on one thread
// and freed on others, in any order, never overlap a node still alive, and
// a slab is reused once all its nodes are freed. (Under AddressSanitizer the
// slabs are off and these run on plain new/delete.)

#include <atask/pool/detail/node_alloc.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace {

using atask::detail::small_node_alloc;
using atask::detail::small_node_free;
using atask::detail::small_node_lanes;
using atask::detail::small_node_size;

// Fills a node with its serial number; checks it is still there.
void stamp(void* p, std::uint64_t serial) {
  auto* w = static_cast<std::uint64_t*>(p);
  for (std::size_t i = 0; i < small_node_size / sizeof serial; ++i) w[i] = serial ^ i;
}
bool intact(const void* p, std::uint64_t serial) {
  const auto* w = static_cast<const std::uint64_t*>(p);
  for (std::size_t i = 0; i < small_node_size / sizeof serial; ++i)
    if (w[i] != (serial ^ i)) return false;
  return true;
}

struct Handoff {
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::pair<void*, std::uint64_t>> q;
  bool done = false;
};

}  // namespace

TEST_SUITE("thread_pool") {
  TEST_CASE("small nodes cut on one thread and freed on others in any order never overlap a live node") {
    constexpr std::uint64_t total = 200'000;
    Handoff h;
    std::atomic<std::uint64_t> broken{0}, freed{0};
    // Two consumers hold nodes for a while (a random number of them) and
    // free them out of order, as pool threads of several priorities would.
    auto consume = [&](unsigned seed) {
      std::mt19937 rng(seed);
      std::vector<std::pair<void*, std::uint64_t>> held;
      for (;;) {
        std::pair<void*, std::uint64_t> n;
        {
          std::unique_lock lk(h.m);
          h.cv.wait(lk, [&] { return !h.q.empty() || h.done; });
          if (h.q.empty()) break;
          n = h.q.front();
          h.q.pop_front();
        }
        held.push_back(n);
        while (held.size() > rng() % 64) {
          const std::size_t i = rng() % held.size();
          if (!intact(held[i].first, held[i].second)) ++broken;
          small_node_free(held[i].first);
          ++freed;
          held[i] = held.back();
          held.pop_back();
        }
      }
      for (auto& n : held) {
        if (!intact(n.first, n.second)) ++broken;
        small_node_free(n.first);
        ++freed;
      }
    };
    std::thread a(consume, 1u), b(consume, 2u);
    std::mt19937 rng(3);
    for (std::uint64_t serial = 1; serial <= total; ++serial) {
      void* p = small_node_alloc(rng() % small_node_lanes);
      stamp(p, serial);
      std::lock_guard lk(h.m);
      h.q.emplace_back(p, serial);
      h.cv.notify_one();
    }
    {
      std::lock_guard lk(h.m);
      h.done = true;
    }
    h.cv.notify_all();
    a.join();
    b.join();
    CHECK(freed == total);
    CHECK(broken == 0);
  }

  TEST_CASE("a slab whose nodes are all freed is reused rather than a new one taken") {
    if constexpr (!atask::detail::small_node_cache) return;  // (plain new/delete under ASan)
    // Nodes of one lane from one thread come from the same slab until it is
    // full: addresses in one block, ascending (a new thread: a new slab).
    std::thread([] {
      std::vector<void*> first;
      for (int i = 0; i < 8; ++i) first.push_back(small_node_alloc(0));
      for (std::size_t i = 1; i < first.size(); ++i)
        CHECK(static_cast<char*>(first[i]) == static_cast<char*>(first[i - 1]) + small_node_size);
      for (void* p : first) small_node_free(p);
    }).join();
    // Freed on another thread, and this thread's slab left (its thread
    // exits): the slab comes back for the next allocations.
    std::set<std::uintptr_t> slabs_before;
    std::thread([&] {
      std::vector<void*> mine;
      for (int i = 0; i < 8; ++i) mine.push_back(small_node_alloc(1));
      for (void* p : mine) slabs_before.insert(reinterpret_cast<std::uintptr_t>(p));
      for (void* p : mine) small_node_free(p);
    }).join();  // its thread-local lane leaves the slab at exit: count 0, recycled
    bool reused = false;
    std::thread([&] {
      void* p = small_node_alloc(2);
      reused = slabs_before.count(reinterpret_cast<std::uintptr_t>(p)) == 1;
      small_node_free(p);
    }).join();
    CHECK(reused);
  }
}
