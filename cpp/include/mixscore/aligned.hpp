// 64-byte aligned storage (whole cache lines, aligned vector loads) for packed GEMM panels.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

namespace mixscore {

template <typename T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(std::size_t n) {
    void* p = std::aligned_alloc(64, ((n * sizeof(T) + 63) / 64) * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { std::free(p); }
  bool operator==(const CacheAligned&) const { return true; }
  bool operator!=(const CacheAligned&) const { return false; }
};
template <typename T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

// The same storage without zeroing on resize (for large buffers written in full before they
// are read: zeroing them doubled the time of preparing a training set).
template <typename T>
struct CacheAlignedUninit : CacheAligned<T> {
  template <typename U>
  struct rebind {
    using other = CacheAlignedUninit<U>;
  };
  CacheAlignedUninit() = default;
  template <typename U>
  CacheAlignedUninit(const CacheAlignedUninit<U>&) {}
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) > 0) ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    else ::new (static_cast<void*>(p)) U;
  }
};
template <typename T>
using AlignedBuffer = std::vector<T, CacheAlignedUninit<T>>;

}  // namespace mixscore
