// Barriers and SIMD-group collectives for the CPU emulation. Every function here is a sync point
// of the scheduler in emu_launch.h: the calling logical thread parks until the barrier releases or
// the collective's lanes have all arrived, and results are computed from every taking-part lane's
// value. The call site (std::source_location) identifies "the same" barrier/collective.
//
// Lanes that do not take part in a collective (returned, or waiting elsewhere) are inactive, as
// in Metal. Reading an inactive or non-existent lane (shuffle from beyond a partial SIMD-group)
// is undefined in Metal; here it yields poison (all bits set: NaN for floats, -1 for ints).
#pragma once

#include <cstring>
#include <source_location>
#include <string>

#include "emu_launch.h"
#include "emu_math.h"

namespace metal_emu::detail {

using Site = std::source_location;

template <class T>
inline T collective(const char* what, CombineFn fn, const T* in, int arg, const Site& site) {
  T out;
  Arrival a;
  a.fn = fn;
  a.what = what;
  a.site = site;
  a.in = in;
  a.out = &out;
  a.arg = arg;
  Scheduler::block(Wait::Collective, a);
  return out;
}

template <class T>
inline const T& in_(const SimdCall& c, uint l) { return *static_cast<const T*>(c.in[l]); }
template <class T>
inline T& out_(const SimdCall& c, uint l) { return *static_cast<T*>(c.out[l]); }
template <class T>
inline void poison(T& x) { std::memset(static_cast<void*>(&x), 0xFF, sizeof(T)); }

inline void combine_none(SimdCall&) {}

// Reduction over the taking-part lanes in lane order, result to all of them.
template <class T, class Op>
inline void reduce(SimdCall& c, Op op) {
  bool have = false;
  T acc{};
  for (uint l = 0; l < c.width; ++l) {
    if (!c.present[l]) continue;
    acc = have ? T(op(acc, in_<T>(c, l))) : in_<T>(c, l);
    have = true;
  }
  for (uint l = 0; l < c.width; ++l)
    if (c.present[l]) out_<T>(c, l) = acc;
}
template <class T, class Op>
inline void prefix(SimdCall& c, Op op, T identity, bool inclusive) {
  T acc = identity;
  for (uint l = 0; l < c.width; ++l) {
    if (!c.present[l]) continue;
    const T v = in_<T>(c, l);
    if (inclusive) acc = T(op(acc, v));
    out_<T>(c, l) = acc;
    if (!inclusive) acc = T(op(acc, v));
  }
}

template <class T> void combine_sum(SimdCall& c) { reduce<T>(c, [](T a, T b) { return a + b; }); }
template <class T> void combine_product(SimdCall& c) { reduce<T>(c, [](T a, T b) { return a * b; }); }
template <class T> void combine_max(SimdCall& c) { reduce<T>(c, [](T a, T b) { return metal::max(a, b); }); }
template <class T> void combine_min(SimdCall& c) { reduce<T>(c, [](T a, T b) { return metal::min(a, b); }); }
template <class T> void combine_and(SimdCall& c) { reduce<T>(c, [](T a, T b) { return a & b; }); }
template <class T> void combine_or(SimdCall& c) { reduce<T>(c, [](T a, T b) { return a | b; }); }
template <class T> void combine_xor(SimdCall& c) { reduce<T>(c, [](T a, T b) { return a ^ b; }); }
inline void combine_all(SimdCall& c) { reduce<bool>(c, [](bool a, bool b) { return a && b; }); }
inline void combine_any(SimdCall& c) { reduce<bool>(c, [](bool a, bool b) { return a || b; }); }
template <class T> void combine_incl_sum(SimdCall& c) { prefix<T>(c, [](T a, T b) { return a + b; }, T(0), true); }
template <class T> void combine_excl_sum(SimdCall& c) { prefix<T>(c, [](T a, T b) { return a + b; }, T(0), false); }
template <class T> void combine_incl_product(SimdCall& c) { prefix<T>(c, [](T a, T b) { return a * b; }, T(1), true); }
template <class T> void combine_excl_product(SimdCall& c) { prefix<T>(c, [](T a, T b) { return a * b; }, T(1), false); }

// Shuffles. `src(lane, arg)` gives the source lane; kOwn keeps the caller's value (Metal: the
// upper/lower `delta` lanes of shuffle_down/up are unchanged).
inline constexpr int kOwn = -1;
template <class T, class Src>
inline void shuffle(SimdCall& c, Src src) {
  for (uint l = 0; l < c.width; ++l) {
    if (!c.present[l]) continue;
    const int s = src(int(l), c.arg[l]);
    if (s == kOwn) {
      out_<T>(c, l) = in_<T>(c, l);
    } else if (s >= 0 && uint(s) < c.width && c.present[s]) {
      out_<T>(c, l) = in_<T>(c, uint(s));
    } else {
      poison(out_<T>(c, l));
    }
  }
}
template <class T> void combine_shuffle(SimdCall& c) {
  shuffle<T>(c, [](int, int a) { return a < int(kSimdWidth) ? a : -2; });
}
template <class T> void combine_shuffle_down(SimdCall& c) {
  shuffle<T>(c, [](int l, int d) { return l + d >= int(kSimdWidth) ? kOwn : l + d; });
}
template <class T> void combine_shuffle_up(SimdCall& c) {
  shuffle<T>(c, [](int l, int d) { return l - d < 0 ? kOwn : l - d; });
}
template <class T> void combine_shuffle_xor(SimdCall& c) {
  shuffle<T>(c, [](int l, int m) { return (l ^ m) < int(kSimdWidth) ? (l ^ m) : -2; });
}
template <class T> void combine_shuffle_rotate_down(SimdCall& c) {
  shuffle<T>(c, [](int l, int d) { return int((uint(l) + uint(d)) % kSimdWidth); });
}
template <class T> void combine_shuffle_rotate_up(SimdCall& c) {
  shuffle<T>(c, [](int l, int d) { return int((uint(l) + kSimdWidth - uint(d) % kSimdWidth) % kSimdWidth); });
}
// broadcast: the lane id must be uniform over the SIMD-group (Metal requires it).
template <class T> void combine_broadcast(SimdCall& c) {
  int lane = -1;
  for (uint l = 0; l < c.width; ++l) {
    if (!c.present[l]) continue;
    if (lane >= 0 && c.arg[l] != lane) {
      c.error = "broadcast lane id differs between lanes (" + std::to_string(lane) + " vs " +
                std::to_string(c.arg[l]) + "); it must be uniform over the SIMD-group";
      return;
    }
    lane = c.arg[l];
  }
  shuffle<T>(c, [](int, int a) { return a < int(kSimdWidth) ? a : -2; });
}
template <class T> void combine_broadcast_first(SimdCall& c) {
  int first = -1;
  for (uint l = 0; l < c.width && first < 0; ++l)
    if (c.present[l]) first = int(l);
  shuffle<T>(c, [first](int, int) { return first; });
}
inline void combine_is_first(SimdCall& c) {
  bool seen = false;
  for (uint l = 0; l < c.width; ++l) {
    if (!c.present[l]) continue;
    out_<bool>(c, l) = !seen;
    seen = true;
  }
}

}  // namespace metal_emu::detail

namespace metal {

enum class mem_flags : unsigned {
  mem_none = 0,
  mem_device = 1,
  mem_threadgroup = 2,
  mem_texture = 4,
  mem_threadgroup_imageblock = 0x40,
};
constexpr mem_flags operator|(mem_flags a, mem_flags b) {
  return mem_flags(unsigned(a) | unsigned(b));
}

// The emulator's memory is sequentially consistent, so every flag (even mem_none) orders memory.
inline void threadgroup_barrier(mem_flags, const metal_emu::detail::Site& site =
                                               metal_emu::detail::Site::current()) {
  metal_emu::detail::Arrival a;
  a.what = "threadgroup_barrier";
  a.site = site;
  metal_emu::detail::Scheduler::block(metal_emu::detail::Wait::TgBarrier, a);
}
inline void simdgroup_barrier(mem_flags, const metal_emu::detail::Site& site =
                                             metal_emu::detail::Site::current()) {
  const char dummy = 0;
  metal_emu::detail::collective<char>("simdgroup_barrier", &metal_emu::detail::combine_none, &dummy,
                                      0, site);
}

#define METAL_EMU_SIMD_UNARY(name, combine)                                                     \
  template <class T>                                                                            \
  inline T name(T x, const metal_emu::detail::Site& site = metal_emu::detail::Site::current()) { \
    return metal_emu::detail::collective<T>(#name, &metal_emu::detail::combine<T>, &x, 0, site); \
  }
METAL_EMU_SIMD_UNARY(simd_sum, combine_sum)
METAL_EMU_SIMD_UNARY(simd_product, combine_product)
METAL_EMU_SIMD_UNARY(simd_max, combine_max)
METAL_EMU_SIMD_UNARY(simd_min, combine_min)
METAL_EMU_SIMD_UNARY(simd_and, combine_and)
METAL_EMU_SIMD_UNARY(simd_or, combine_or)
METAL_EMU_SIMD_UNARY(simd_xor, combine_xor)
METAL_EMU_SIMD_UNARY(simd_prefix_inclusive_sum, combine_incl_sum)
METAL_EMU_SIMD_UNARY(simd_prefix_exclusive_sum, combine_excl_sum)
METAL_EMU_SIMD_UNARY(simd_prefix_inclusive_product, combine_incl_product)
METAL_EMU_SIMD_UNARY(simd_prefix_exclusive_product, combine_excl_product)
METAL_EMU_SIMD_UNARY(simd_broadcast_first, combine_broadcast_first)
#undef METAL_EMU_SIMD_UNARY

#define METAL_EMU_SIMD_LANE(name, combine, argname)                                             \
  template <class T>                                                                            \
  inline T name(T x, ushort argname,                                                            \
                const metal_emu::detail::Site& site = metal_emu::detail::Site::current()) {     \
    return metal_emu::detail::collective<T>(#name, &metal_emu::detail::combine<T>, &x,          \
                                            int(argname), site);                                \
  }
METAL_EMU_SIMD_LANE(simd_shuffle, combine_shuffle, lane)
METAL_EMU_SIMD_LANE(simd_shuffle_down, combine_shuffle_down, delta)
METAL_EMU_SIMD_LANE(simd_shuffle_up, combine_shuffle_up, delta)
METAL_EMU_SIMD_LANE(simd_shuffle_xor, combine_shuffle_xor, mask)
METAL_EMU_SIMD_LANE(simd_shuffle_rotate_down, combine_shuffle_rotate_down, delta)
METAL_EMU_SIMD_LANE(simd_shuffle_rotate_up, combine_shuffle_rotate_up, delta)
METAL_EMU_SIMD_LANE(simd_broadcast, combine_broadcast, lane)
#undef METAL_EMU_SIMD_LANE

inline bool simd_all(bool x, const metal_emu::detail::Site& site = metal_emu::detail::Site::current()) {
  return metal_emu::detail::collective<bool>("simd_all", &metal_emu::detail::combine_all, &x, 0, site);
}
inline bool simd_any(bool x, const metal_emu::detail::Site& site = metal_emu::detail::Site::current()) {
  return metal_emu::detail::collective<bool>("simd_any", &metal_emu::detail::combine_any, &x, 0, site);
}
inline bool simd_is_first(const metal_emu::detail::Site& site = metal_emu::detail::Site::current()) {
  const bool dummy = false;
  return metal_emu::detail::collective<bool>("simd_is_first", &metal_emu::detail::combine_is_first,
                                             &dummy, 0, site);
}

}  // namespace metal
