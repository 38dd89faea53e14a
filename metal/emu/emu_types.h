// Metal's scalar and vector types for the CPU emulation (metal/emu). Plain host C++: no Metal
// keywords are defined here, so host code (emu_launch.h, test harnesses) can include it freely.
//
// Modelled on the Metal Shading Language spec: vectors of 2, 3 and 4 components with .x .y .z .w
// and [i]; a 3-vector has the size and alignment of a 4-vector (float3: 16 bytes), as in Metal;
// element-wise arithmetic with vectors and with scalars; explicit conversion between element
// types (Metal has no implicit vector conversions); comparisons give bool vectors (use all/any).
// Not modelled: swizzles (.xy, .zyx), packed_* types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
// Metal's 16-bit float. g++ >= 12 implements _Float16 (arithmetic through float, rounded to half).
typedef _Float16 half;

namespace metal {

template <class T>
inline constexpr bool is_scalar_v = std::is_arithmetic_v<T> || std::is_same_v<T, half>;

template <class T, int N>
struct vec_storage;
template <class T>
struct alignas(sizeof(T) * 2) vec_storage<T, 2> { T x, y; };
template <class T>
struct alignas(sizeof(T) * 4) vec_storage<T, 3> { T x, y, z; };
template <class T>
struct alignas(sizeof(T) * 4) vec_storage<T, 4> { T x, y, z, w; };

template <class T, int N>
struct vec;

template <class T>
struct is_vec : std::false_type {};
template <class T, int N>
struct is_vec<vec<T, N>> : std::true_type {};
template <class T>
inline constexpr bool is_vec_v = is_vec<T>::value;

// Number of components an argument contributes to a vector constructor.
template <class A>
constexpr int components() {
  if constexpr (is_vec_v<A>) return A::size;
  else return 1;
}

template <class T, int N>
struct vec : vec_storage<T, N> {
  static_assert(N >= 2 && N <= 4, "Metal vectors have 2, 3 or 4 components");
  using value_type = T;
  static constexpr int size = N;

  vec() = default;  // trivial, like a Metal local: uninitialised
  // Scalar broadcast: float4 v = 0.0f;
  template <class S, std::enable_if_t<is_scalar_v<S>, int> = 0>
  constexpr vec(S s) {
    for (int i = 0; i < N; ++i) (*this)[i] = T(s);
  }
  // Components and concatenations: float4(a, b, c, d), float4(float2 ab, c, d), float3(float2, z).
  template <class A0, class A1, class... As,
            std::enable_if_t<(components<A0>() + components<A1>() + (0 + ... + components<As>())) == N,
                             int> = 0>
  constexpr vec(A0 a0, A1 a1, As... as) {
    int k = 0;
    append(k, a0);
    append(k, a1);
    (append(k, as), ...);
  }
  // Element-type conversion is explicit, as in Metal: float2(int2(...)).
  template <class U, std::enable_if_t<!std::is_same_v<U, T>, int> = 0>
  explicit constexpr vec(const vec<U, N>& o) {
    for (int i = 0; i < N; ++i) (*this)[i] = T(o[i]);
  }

  // By member name, not by pointer arithmetic from &x (that would be undefined behaviour).
  constexpr T& operator[](int i) { return component(*this, i); }
  constexpr const T& operator[](int i) const { return component(*this, i); }

#define METAL_EMU_COMPOUND(op)                                      \
  constexpr vec& operator op##=(const vec& o) {                     \
    for (int i = 0; i < N; ++i) (*this)[i] op## = o[i];             \
    return *this;                                                   \
  }                                                                 \
  template <class S, std::enable_if_t<is_scalar_v<S>, int> = 0>     \
  constexpr vec& operator op##=(S s) {                              \
    for (int i = 0; i < N; ++i) (*this)[i] op## = T(s);             \
    return *this;                                                   \
  }
  METAL_EMU_COMPOUND(+)
  METAL_EMU_COMPOUND(-)
  METAL_EMU_COMPOUND(*)
  METAL_EMU_COMPOUND(/)
  METAL_EMU_COMPOUND(%)
  METAL_EMU_COMPOUND(&)
  METAL_EMU_COMPOUND(|)
  METAL_EMU_COMPOUND(^)
  METAL_EMU_COMPOUND(<<)
  METAL_EMU_COMPOUND(>>)
#undef METAL_EMU_COMPOUND

 private:
  template <class V>
  static constexpr auto& component(V& v, int i) {
    if constexpr (N == 2) {
      return i == 0 ? v.x : v.y;
    } else if constexpr (N == 3) {
      return i == 0 ? v.x : i == 1 ? v.y : v.z;
    } else {
      return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
    }
  }
  template <class A>
  constexpr void append(int& k, const A& a) {
    if constexpr (is_vec_v<A>) {
      for (int i = 0; i < A::size; ++i) (*this)[k++] = T(a[i]);
    } else {
      (*this)[k++] = T(a);
    }
  }
};

#define METAL_EMU_BINARY(op)                                                        \
  template <class T, int N>                                                         \
  constexpr vec<T, N> operator op(vec<T, N> a, const vec<T, N>& b) {                \
    for (int i = 0; i < N; ++i) a[i] = T(a[i] op b[i]);                             \
    return a;                                                                       \
  }                                                                                 \
  template <class T, int N, class S, std::enable_if_t<is_scalar_v<S>, int> = 0>     \
  constexpr vec<T, N> operator op(vec<T, N> a, S s) {                               \
    for (int i = 0; i < N; ++i) a[i] = T(a[i] op T(s));                             \
    return a;                                                                       \
  }                                                                                 \
  template <class T, int N, class S, std::enable_if_t<is_scalar_v<S>, int> = 0>     \
  constexpr vec<T, N> operator op(S s, const vec<T, N>& b) {                        \
    vec<T, N> r;                                                                    \
    for (int i = 0; i < N; ++i) r[i] = T(T(s) op b[i]);                             \
    return r;                                                                       \
  }
METAL_EMU_BINARY(+)
METAL_EMU_BINARY(-)
METAL_EMU_BINARY(*)
METAL_EMU_BINARY(/)
METAL_EMU_BINARY(%)
METAL_EMU_BINARY(&)
METAL_EMU_BINARY(|)
METAL_EMU_BINARY(^)
METAL_EMU_BINARY(<<)
METAL_EMU_BINARY(>>)
#undef METAL_EMU_BINARY

#define METAL_EMU_COMPARE(op)                                                       \
  template <class T, int N>                                                         \
  constexpr vec<bool, N> operator op(const vec<T, N>& a, const vec<T, N>& b) {      \
    vec<bool, N> r;                                                                 \
    for (int i = 0; i < N; ++i) r[i] = a[i] op b[i];                                \
    return r;                                                                       \
  }                                                                                 \
  template <class T, int N, class S, std::enable_if_t<is_scalar_v<S>, int> = 0>     \
  constexpr vec<bool, N> operator op(const vec<T, N>& a, S s) {                     \
    vec<bool, N> r;                                                                 \
    for (int i = 0; i < N; ++i) r[i] = a[i] op T(s);                                \
    return r;                                                                       \
  }
METAL_EMU_COMPARE(==)
METAL_EMU_COMPARE(!=)
METAL_EMU_COMPARE(<)
METAL_EMU_COMPARE(<=)
METAL_EMU_COMPARE(>)
METAL_EMU_COMPARE(>=)
#undef METAL_EMU_COMPARE

template <class T, int N>
constexpr vec<T, N> operator-(vec<T, N> a) {
  for (int i = 0; i < N; ++i) a[i] = T(-a[i]);
  return a;
}
template <class T, int N>
constexpr vec<T, N> operator+(const vec<T, N>& a) {
  return a;
}
template <class T, int N>
constexpr vec<T, N> operator~(vec<T, N> a) {
  for (int i = 0; i < N; ++i) a[i] = T(~a[i]);
  return a;
}
template <int N>
constexpr vec<bool, N> operator!(vec<bool, N> a) {
  for (int i = 0; i < N; ++i) a[i] = !a[i];
  return a;
}
template <int N>
constexpr bool all(const vec<bool, N>& a) {
  for (int i = 0; i < N; ++i)
    if (!a[i]) return false;
  return true;
}
template <int N>
constexpr bool any(const vec<bool, N>& a) {
  for (int i = 0; i < N; ++i)
    if (a[i]) return true;
  return false;
}
constexpr bool all(bool a) { return a; }
constexpr bool any(bool a) { return a; }

}  // namespace metal

#define METAL_EMU_VEC_NAMES(T, name) \
  using name##2 = metal::vec<T, 2>;  \
  using name##3 = metal::vec<T, 3>;  \
  using name##4 = metal::vec<T, 4>;
METAL_EMU_VEC_NAMES(float, float)
METAL_EMU_VEC_NAMES(half, half)
METAL_EMU_VEC_NAMES(int, int)
METAL_EMU_VEC_NAMES(uint, uint)
METAL_EMU_VEC_NAMES(short, short)
METAL_EMU_VEC_NAMES(ushort, ushort)
METAL_EMU_VEC_NAMES(char, char)
METAL_EMU_VEC_NAMES(uchar, uchar)
METAL_EMU_VEC_NAMES(bool, bool)
#undef METAL_EMU_VEC_NAMES

namespace metal {
using ::float2; using ::float3; using ::float4;
using ::half2; using ::half3; using ::half4;
using ::int2; using ::int3; using ::int4;
using ::uint2; using ::uint3; using ::uint4;
using ::short2; using ::short3; using ::short4;
using ::ushort2; using ::ushort3; using ::ushort4;
using ::bool2; using ::bool3; using ::bool4;
}  // namespace metal
