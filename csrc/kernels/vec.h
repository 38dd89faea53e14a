// Value types of the kernel bodies. A body is templated on the type T that one logical thread
// computes with: a scalar (float on Metal; float or double on the CPU) for one channel, or, on the
// CPU, a vector of 16 floats that runs 16 neighbouring channels at once, one per SIMD lane
// (channels-last arrays make their elements contiguous). This header says how such a T meets the
// buffers (Vec<T>), how its bits are read (Bits<T>, for the branch-free math of fast_math.h), and
// how the CPU sums across vector lanes. (Specialisations rather than derived classes throughout:
// MSL has none.)
#pragma once

#include "kernels/defines.h"

// CPU builds with GCC >= 12 (vector ?: with scalar operands, __builtin_shufflevector, bit casts of
// vectors) run 16 channels per vector; others (clang: not tried) one channel at a time.
#if !defined(__METAL_VERSION__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define DFK_VECTOR_LANES 16
#else
#define DFK_VECTOR_LANES 1
#endif

// __builtin_shufflevector for the horizontal sums below: clang, GCC >= 12.
#if !defined(__METAL_VERSION__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
#define DFK_VECTOR_SHUFFLE 1
#endif

#if DFK_VECTOR_LANES > 1
// Everything that takes or returns these 64-byte vectors is always-inline, so no call passes one
// and GCC's note that such calls change ABI between ISA levels (the CPU drivers' ISA variants)
// does not apply. (Left on for the including file: the note is emitted at its end.)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace dfk {

#if !defined(__METAL_VERSION__)
typedef float f32x16 __attribute__((vector_size(64)));
typedef int i32x16 __attribute__((vector_size(64)));
typedef unsigned u32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
#endif

// Vec<T>: how a thread's value type T meets the buffers, whose element type is S. Scalar T: one
// channel, plain loads. Per-channel arrays are either contiguous over channels ((batch, time,
// channels) and (channels,) arrays: load/store) or `stride` apart ((channels, state)-shaped rows:
// load_strided/store_strided).
template <typename T>
struct Vec {
  typedef T S;
  static DF_INLINE T splat(S s) { return s; }
  static DF_INLINE T load(const DF_DEVICE S* p) { return *p; }
  static DF_INLINE T load_strided(const DF_DEVICE S* p, long) { return *p; }
  static DF_INLINE void store(DF_DEVICE S* p, T v) { *p = v; }
  static DF_INLINE void store_strided(DF_DEVICE S* p, long, T v) { *p = v; }
};

template <typename T>
using Scalar = typename Vec<T>::S;

#if DFK_VECTOR_LANES > 1
// 16 channels at once: lane l is channel d + l. Values shared by all channels (the scan's B and C)
// enter as scalars that the vector arithmetic broadcasts.
template <>
struct Vec<f32x16> {
  typedef float S;
  static DF_INLINE f32x16 splat(float s) { return f32x16{} + s; }
  static DF_INLINE f32x16 load(const float* p) {
    f32x16 v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
  }
  static DF_INLINE f32x16 load_strided(const float* p, long stride) {
    f32x16 v;
    for (int l = 0; l < 16; ++l) v[l] = p[l * stride];
    return v;
  }
  static DF_INLINE void store(float* p, f32x16 v) { __builtin_memcpy(p, &v, sizeof(v)); }
  static DF_INLINE void store_strided(float* p, long stride, f32x16 v) {
    for (int l = 0; l < 16; ++l) p[l * stride] = v[l];
  }
};
#endif

#if !defined(__METAL_VERSION__)
// The CPU drivers' wide type for buffers of element type S: `width` neighbouring channels per
// value. Channels left over at the end of a row (channels % width) run one at a time as S.
template <typename S>
struct Wide {
  typedef S type;
  static constexpr int width = 1;
};
#if DFK_VECTOR_LANES > 1
template <>
struct Wide<float> {
  typedef f32x16 type;
  static constexpr int width = DFK_VECTOR_LANES;
};
#endif
#endif

// Bit access for the float math of fast_math.h: I/U are the matching (vector of) int/unsigned.
template <typename T>
struct Bits;

template <>
struct Bits<float> {
  typedef int I;
  typedef unsigned U;
#if defined(__METAL_VERSION__)
  static DF_INLINE I bits(float x) { return metal::as_type<int>(x); }
  static DF_INLINE float from_bits(U x) { return metal::as_type<float>(x); }
#else
  static DF_INLINE I bits(float x) { return __builtin_bit_cast(int, x); }
  static DF_INLINE float from_bits(U x) { return __builtin_bit_cast(float, x); }
#endif
  static DF_INLINE float from_int(I x) { return (float)x; }
};

#if DFK_VECTOR_LANES > 1
template <>
struct Bits<f32x16> {
  typedef i32x16 I;
  typedef u32x16 U;
  static DF_INLINE I bits(f32x16 x) { return __builtin_bit_cast(I, x); }
  static DF_INLINE f32x16 from_bits(U x) { return __builtin_bit_cast(f32x16, x); }
  static DF_INLINE f32x16 from_int(I x) { return __builtin_convertvector(x, f32x16); }
};
#endif

// Sum of v[0..MAXN) (entries at or past the runtime count must be 0). Loops store their per-item
// terms into such an array and sum it here, so the loops themselves stay purely elementwise
// (vectorisable without reassociation flags). On the CPU the common float x 16 case is a shuffle
// tree on one vector register; otherwise (also for vectors of channels: lane-wise) pairwise halving.
template <typename T, int MAXN>
DF_INLINE T hsum(DF_THREAD T* v) {
#if defined(DFK_VECTOR_SHUFFLE)
  if constexpr (sizeof(T) == 4 && MAXN == 16) {
    f32x16 x;
    __builtin_memcpy(&x, v, sizeof(x));
    const f32x8 a = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) +
                    __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
    const f32x4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
  }
#endif
  T w[MAXN];
  for (int n = 0; n < MAXN; ++n) w[n] = v[n];
  for (int h = MAXN / 2; h >= 1; h /= 2) {
    for (int n = 0; n < h; ++n) w[n] += w[n + h];
  }
  return w[0];
}

#if DFK_VECTOR_LANES > 1
// Lane sums of 16 vectors at once: result[j] = sum over the 16 lanes of v[j]. A transpose-and-add
// butterfly (15 pairs of single-instruction shuffles and 15 adds) instead of 16 horizontal sums.
// Levels 1-2 combine whole halves/quarters, levels 3-4 stay inside 128-bit blocks; that leaves the
// sum of input i in lane 4 (i % 4) + i / 4, so the inputs go in in that (self-inverse) order.
DF_INLINE f32x16 lane_sums16(const f32x16* v) {
  f32x16 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {
    const int i0 = 2 * i, i1 = 2 * i + 1;
    const f32x16 x = v[4 * (i0 % 4) + i0 / 4], y = v[4 * (i1 % 4) + i1 / 4];
    a[i] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  }
  for (int i = 0; i < 4; ++i) {
    const f32x16 x = a[2 * i], y = a[2 * i + 1];
    b[i] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  }
  for (int i = 0; i < 2; ++i) {
    const f32x16 x = b[2 * i], y = b[2 * i + 1];
    c[i] = __builtin_shufflevector(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
           __builtin_shufflevector(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  }
  return __builtin_shufflevector(c[0], c[1], 0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30) +
         __builtin_shufflevector(c[0], c[1], 1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31);
}
#endif

}  // namespace dfk
