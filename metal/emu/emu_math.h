// metal:: math for the CPU emulation: scalar float/half and element-wise on vectors.
// Results are the host libm's correctly-rounded-ish float results; metal::fast:: and
// metal::precise:: are the same functions here (the GPU's fast-math error bounds are not modelled).
#pragma once

#include <cfloat>
#include <cmath>
#include <limits>

#include "emu_types.h"

namespace metal {
namespace emu_detail {

// Scalar type a math function computes in. A `double` argument appears only through an
// unsuffixed literal (`x * 0.5`), which Metal treats as float (there is no double in MSL).
template <class T>
struct math_type { using type = T; };
template <>
struct math_type<double> { using type = float; };
template <class T>
using math_t = typename math_type<T>::type;

template <class T>
inline constexpr bool is_float_v = std::is_same_v<T, float> || std::is_same_v<T, half> ||
                                   std::is_same_v<T, double>;
template <class T>
struct elem { using type = T; };
template <class T, int N>
struct elem<vec<T, N>> { using type = T; };
template <class T>
inline constexpr bool is_float_arg_v = is_float_v<typename elem<T>::type>;

// Apply a float function component-wise; half computes in float and rounds back.
template <class T, class F>
inline auto map1(T x, F f) {
  if constexpr (is_vec_v<T>) {
    T r;
    for (int i = 0; i < T::size; ++i) r[i] = typename T::value_type(f(float(x[i])));
    return r;
  } else {
    return math_t<T>(f(float(x)));
  }
}
template <class T, class F>
inline auto map2(T a, T b, F f) {
  if constexpr (is_vec_v<T>) {
    T r;
    for (int i = 0; i < T::size; ++i) r[i] = typename T::value_type(f(a[i], b[i]));
    return r;
  } else {
    return math_t<T>(f(math_t<T>(a), math_t<T>(b)));
  }
}
template <class T, class F>
inline auto map3(T a, T b, T c, F f) {
  if constexpr (is_vec_v<T>) {
    T r;
    for (int i = 0; i < T::size; ++i) r[i] = typename T::value_type(f(a[i], b[i], c[i]));
    return r;
  } else {
    return math_t<T>(f(math_t<T>(a), math_t<T>(b), math_t<T>(c)));
  }
}

}  // namespace emu_detail

#define METAL_EMU_UNARY(name, expr)                                              \
  template <class T, std::enable_if_t<emu_detail::is_float_arg_v<T>, int> = 0>  \
  inline auto name(T x) {                                                        \
    return emu_detail::map1(x, [](float v) { return expr; });                    \
  }
METAL_EMU_UNARY(exp, std::exp(v))
METAL_EMU_UNARY(exp2, std::exp2(v))
METAL_EMU_UNARY(exp10, std::pow(10.0f, v))
METAL_EMU_UNARY(log, std::log(v))
METAL_EMU_UNARY(log2, std::log2(v))
METAL_EMU_UNARY(log10, std::log10(v))
METAL_EMU_UNARY(sqrt, std::sqrt(v))
METAL_EMU_UNARY(rsqrt, 1.0f / std::sqrt(v))
METAL_EMU_UNARY(sin, std::sin(v))
METAL_EMU_UNARY(cos, std::cos(v))
METAL_EMU_UNARY(tan, std::tan(v))
METAL_EMU_UNARY(asin, std::asin(v))
METAL_EMU_UNARY(acos, std::acos(v))
METAL_EMU_UNARY(atan, std::atan(v))
METAL_EMU_UNARY(sinh, std::sinh(v))
METAL_EMU_UNARY(cosh, std::cosh(v))
METAL_EMU_UNARY(tanh, std::tanh(v))
METAL_EMU_UNARY(floor, std::floor(v))
METAL_EMU_UNARY(ceil, std::ceil(v))
METAL_EMU_UNARY(round, std::round(v))
METAL_EMU_UNARY(rint, std::rint(v))
METAL_EMU_UNARY(trunc, std::trunc(v))
METAL_EMU_UNARY(fabs, std::fabs(v))
METAL_EMU_UNARY(fract, std::fmin(v - std::floor(v), 0x1.fffffep-1f))
METAL_EMU_UNARY(saturate, std::fmin(std::fmax(v, 0.0f), 1.0f))
METAL_EMU_UNARY(sign, (v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : std::isnan(v) ? 0.0f : v))
#undef METAL_EMU_UNARY

#define METAL_EMU_BINARY_FN(name, expr)                                                    \
  template <class T, std::enable_if_t<emu_detail::is_float_arg_v<T>, int> = 0>            \
  inline auto name(T a, T b) {                                                             \
    return emu_detail::map2(a, b, [](auto x, auto y) { return expr; });                    \
  }
METAL_EMU_BINARY_FN(pow, std::pow(float(x), float(y)))
METAL_EMU_BINARY_FN(powr, std::pow(float(x), float(y)))
METAL_EMU_BINARY_FN(atan2, std::atan2(float(x), float(y)))
METAL_EMU_BINARY_FN(fmod, std::fmod(float(x), float(y)))
METAL_EMU_BINARY_FN(copysign, std::copysign(float(x), float(y)))
METAL_EMU_BINARY_FN(fmax, std::fmax(float(x), float(y)))
METAL_EMU_BINARY_FN(fmin, std::fmin(float(x), float(y)))
METAL_EMU_BINARY_FN(step, (float(y) < float(x) ? 0.0f : 1.0f))
METAL_EMU_BINARY_FN(divide, float(x) / float(y))
METAL_EMU_BINARY_FN(fdim, std::fdim(float(x), float(y)))
#undef METAL_EMU_BINARY_FN

template <class T, std::enable_if_t<emu_detail::is_float_arg_v<T>, int> = 0>
inline auto fma(T a, T b, T c) {
  return emu_detail::map3(a, b, c, [](auto x, auto y, auto z) { return std::fma(float(x), float(y), float(z)); });
}
// mix(x, y, a) = x + (y - x) * a
template <class T, std::enable_if_t<emu_detail::is_float_arg_v<T>, int> = 0>
inline auto mix(T x, T y, T a) {
  return emu_detail::map3(x, y, a, [](auto p, auto q, auto t) { return float(p) + (float(q) - float(p)) * float(t); });
}

// abs, max, min, clamp: any scalar or vector type; float max/min follow fmax/fmin (NaN-ignoring).
template <class T, std::enable_if_t<is_scalar_v<T> || is_vec_v<T>, int> = 0>
inline T abs(T x) {
  if constexpr (is_vec_v<T>) {
    for (int i = 0; i < T::size; ++i) x[i] = abs(x[i]);
    return x;
  } else if constexpr (std::is_unsigned_v<T>) {
    return x;
  } else {
    return x < T(0) ? T(-x) : x;
  }
}
inline float abs(double x) { return abs(float(x)); }

template <class T, std::enable_if_t<is_scalar_v<T> || is_vec_v<T>, int> = 0>
inline T max(T a, T b) {
  if constexpr (is_vec_v<T>) {
    for (int i = 0; i < T::size; ++i) a[i] = max(a[i], b[i]);
    return a;
  } else if constexpr (emu_detail::is_float_v<T>) {
    return T(std::fmax(float(a), float(b)));
  } else {
    return a > b ? a : b;
  }
}
template <class T, std::enable_if_t<is_scalar_v<T> || is_vec_v<T>, int> = 0>
inline T min(T a, T b) {
  if constexpr (is_vec_v<T>) {
    for (int i = 0; i < T::size; ++i) a[i] = min(a[i], b[i]);
    return a;
  } else if constexpr (emu_detail::is_float_v<T>) {
    return T(std::fmin(float(a), float(b)));
  } else {
    return a < b ? a : b;
  }
}
template <class T, std::enable_if_t<is_scalar_v<T> || is_vec_v<T>, int> = 0>
inline T clamp(T x, T lo, T hi) {
  return min(max(x, lo), hi);
}
template <class T, int N, class S, std::enable_if_t<is_scalar_v<S>, int> = 0>
inline vec<T, N> clamp(vec<T, N> x, S lo, S hi) {
  return clamp(x, vec<T, N>(lo), vec<T, N>(hi));
}

// A float/half argument mixed with an unsuffixed literal (`max(x, 0.0)`): Metal reads the
// literal as the other argument's type; here the double is converted to it.
#define METAL_EMU_MIXED2(name)                                                                  \
  template <class T, std::enable_if_t<std::is_same_v<T, float> || std::is_same_v<T, half>, int> = 0> \
  inline auto name(T a, double b) { return name(a, T(b)); }                                    \
  template <class T, std::enable_if_t<std::is_same_v<T, float> || std::is_same_v<T, half>, int> = 0> \
  inline auto name(double a, T b) { return name(T(a), b); }
METAL_EMU_MIXED2(max)
METAL_EMU_MIXED2(min)
METAL_EMU_MIXED2(fmax)
METAL_EMU_MIXED2(fmin)
METAL_EMU_MIXED2(pow)
METAL_EMU_MIXED2(powr)
METAL_EMU_MIXED2(atan2)
METAL_EMU_MIXED2(copysign)
METAL_EMU_MIXED2(fmod)
#undef METAL_EMU_MIXED2
template <class T, std::enable_if_t<std::is_same_v<T, float> || std::is_same_v<T, half>, int> = 0>
inline T clamp(T x, double lo, double hi) {
  return clamp(x, T(lo), T(hi));
}

// Three-operand forms.
template <class T, std::enable_if_t<is_scalar_v<T> || is_vec_v<T>, int> = 0>
inline T max3(T a, T b, T c) { return max(max(a, b), c); }
template <class T, std::enable_if_t<is_scalar_v<T> || is_vec_v<T>, int> = 0>
inline T min3(T a, T b, T c) { return min(min(a, b), c); }
template <class T, std::enable_if_t<is_scalar_v<T> || is_vec_v<T>, int> = 0>
inline T median3(T a, T b, T c) { return max(min(a, b), min(max(a, b), c)); }
template <class T, std::enable_if_t<emu_detail::is_float_arg_v<T>, int> = 0>
inline T fmax3(T a, T b, T c) { return fmax(fmax(a, b), c); }
template <class T, std::enable_if_t<emu_detail::is_float_arg_v<T>, int> = 0>
inline T fmin3(T a, T b, T c) { return fmin(fmin(a, b), c); }

// select(a, b, c) = c ? b : a (component-wise for vectors).
template <class T, std::enable_if_t<is_scalar_v<T>, int> = 0>
inline T select(T a, T b, bool c) {
  return c ? b : a;
}
template <class T, int N>
inline vec<T, N> select(vec<T, N> a, const vec<T, N>& b, const vec<bool, N>& c) {
  for (int i = 0; i < N; ++i) a[i] = c[i] ? b[i] : a[i];
  return a;
}

template <class T, std::enable_if_t<emu_detail::is_float_v<T>, int> = 0>
inline bool isnan(T x) { return std::isnan(float(x)); }
template <class T, std::enable_if_t<emu_detail::is_float_v<T>, int> = 0>
inline bool isinf(T x) { return std::isinf(float(x)); }
template <class T, std::enable_if_t<emu_detail::is_float_v<T>, int> = 0>
inline bool isfinite(T x) { return std::isfinite(float(x)); }
template <class T, int N>
inline vec<bool, N> isnan(const vec<T, N>& x) {
  vec<bool, N> r;
  for (int i = 0; i < N; ++i) r[i] = isnan(x[i]);
  return r;
}
template <class T, int N>
inline vec<bool, N> isinf(const vec<T, N>& x) {
  vec<bool, N> r;
  for (int i = 0; i < N; ++i) r[i] = isinf(x[i]);
  return r;
}

// Geometric helpers on float vectors.
template <class T, int N>
inline T dot(const vec<T, N>& a, const vec<T, N>& b) {
  T s = T(0);
  for (int i = 0; i < N; ++i) s += a[i] * b[i];
  return s;
}
template <class T, int N>
inline T length(const vec<T, N>& a) {
  return sqrt(dot(a, a));
}

template <class T>
struct numeric_limits : std::numeric_limits<T> {};
template <>
struct numeric_limits<half> {
  static constexpr bool is_specialized = true;
  static constexpr half min() { return half(0x1p-14f); }
  static constexpr half max() { return half(65504.0f); }
  static constexpr half lowest() { return half(-65504.0f); }
  static constexpr half epsilon() { return half(0x1p-10f); }
  static constexpr half infinity() { return half(std::numeric_limits<float>::infinity()); }
  static constexpr half quiet_NaN() { return half(std::numeric_limits<float>::quiet_NaN()); }
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
};

// as_type<T>(x): reinterpret the bits (sizes must match, as in Metal).
template <class To, class From>
inline To as_type(const From& x) {
  static_assert(sizeof(To) == sizeof(From), "as_type needs types of the same size");
  To r;
  __builtin_memcpy(&r, &x, sizeof(To));
  return r;
}

// metal::precise and metal::fast: the same functions in the emulation.
#define METAL_EMU_MATH_NAMES                                                                   \
  using ::metal::exp; using ::metal::exp2; using ::metal::exp10; using ::metal::log;           \
  using ::metal::log2; using ::metal::log10; using ::metal::sqrt; using ::metal::rsqrt;         \
  using ::metal::sin; using ::metal::cos; using ::metal::tan; using ::metal::asin;              \
  using ::metal::acos; using ::metal::atan; using ::metal::sinh; using ::metal::cosh;           \
  using ::metal::tanh; using ::metal::floor; using ::metal::ceil; using ::metal::round;         \
  using ::metal::rint; using ::metal::trunc; using ::metal::fabs; using ::metal::fract;         \
  using ::metal::saturate; using ::metal::sign; using ::metal::pow; using ::metal::powr;        \
  using ::metal::atan2; using ::metal::fmod; using ::metal::copysign; using ::metal::fmax;      \
  using ::metal::fmin; using ::metal::step; using ::metal::fma; using ::metal::mix;             \
  using ::metal::abs; using ::metal::max; using ::metal::min; using ::metal::clamp;             \
  using ::metal::isnan; using ::metal::isinf; using ::metal::isfinite; using ::metal::dot;      \
  using ::metal::length; using ::metal::divide; using ::metal::fdim; using ::metal::max3;         \
  using ::metal::min3; using ::metal::median3; using ::metal::fmax3; using ::metal::fmin3;
namespace precise { METAL_EMU_MATH_NAMES }
namespace fast { METAL_EMU_MATH_NAMES }
#undef METAL_EMU_MATH_NAMES

}  // namespace metal

// Metal's float constants.
#ifndef M_PI_F
#define M_PI_F 3.14159265358979323846264338327950288f
#define M_PI_2_F 1.57079632679489661923132169163975144f
#define M_E_F 2.71828182845904523536028747135266250f
#define M_LOG2E_F 1.44269504088896340735992468100189214f
#define M_LN2_F 0.693147180559945309417232121458176568f
#define M_LN10_F 2.30258509299404568401799145468436421f
#define M_SQRT2_F 1.41421356237309504880168872420969808f
#define M_1_SQRT2_F 0.707106781186547524400844362104849039f
#endif
#ifndef MAXFLOAT
#define MAXFLOAT FLT_MAX
#endif
