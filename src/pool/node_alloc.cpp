#include <atask/pool/detail/node_alloc.hpp>

#include <mutex>
#include <vector>

namespace atask::detail {

namespace {

constexpr std::size_t magazine_size = 256;
constexpr std::size_t depot_limit = 64;  // magazines kept in the depot; beyond, blocks are freed

using Magazine = std::vector<void*>;

struct Depot {
  std::mutex m;
  std::vector<Magazine> full;
  ~Depot() {
    for (auto& mag : full)
      for (void* p : mag) ::operator delete(p);
  }
};

Depot& depot() {
  static Depot d;  // outlives every thread's magazine (destroyed after main)
  return d;
}

struct ThreadMagazine {
  Magazine mag;
  ThreadMagazine() {
    depot();  // construct the depot first so it is destroyed after us
    mag.reserve(magazine_size);
  }
  ~ThreadMagazine() { give_back(); }

  void give_back() noexcept {
    if (mag.empty()) return;
    auto& d = depot();
    {
      std::lock_guard lk(d.m);
      if (d.full.size() < depot_limit) {
        d.full.push_back(std::move(mag));
        mag = Magazine();
        mag.reserve(magazine_size);
        return;
      }
    }
    for (void* p : mag) ::operator delete(p);
    mag.clear();
  }
};

thread_local ThreadMagazine tls;

}  // namespace

void* small_node_alloc() {
  auto& mag = tls.mag;
  if (mag.empty()) {
    auto& d = depot();
    std::lock_guard lk(d.m);
    if (!d.full.empty()) {
      mag.swap(d.full.back());
      d.full.pop_back();
    }
  }
  if (mag.empty()) return ::operator new(small_node_size);
  void* p = mag.back();
  mag.pop_back();
  return p;
}

void small_node_free(void* p) noexcept {
  auto& mag = tls.mag;
  if (mag.size() >= magazine_size) tls.give_back();
  mag.push_back(p);  // capacity reserved: does not allocate
}

}  // namespace atask::detail
