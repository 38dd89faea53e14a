// The transcendental functions of the kernel bodies, one of each: exp, softplus, sigmoid, tanh.
// float (and the CPU's vectors of floats): branch-free polynomials, the same code on the CPU and on
// Metal, so CPU loops over them vectorise (no libm call, no errno) and both backends compute the
// same float math. double (CPU only): the math library.
#pragma once

#include "kernels/defines.h"
#include "kernels/vec.h"

namespace dfk {
namespace fastmath {  // (not dfk::fastmath: MSL is C++14)

// ---- exp ------------------------------------------------------------------------------------------
// float: range reduction x = k ln2 + r, |r| <= ln2/2 (Cody-Waite, ln2 in two parts), e^r by a
// degree-6 polynomial with minimax relative error 2e-9 on that interval (1.03 ulp measured over
// [-86.9, 88] with the roundings of its float Horner steps), scaled by 2^k built from exponent bits.
// Selects only, written for a float or a vector of floats alike (scalar constants broadcast). x
// below about -86.99 returns 0 (true value < 1.7e-38: no denormals); x > ln(FLT_MAX) returns inf;
// NaN propagates. 12 arithmetic operations after the clamp (the scan's cost is mostly this).
template <typename T>
struct Exp {
  typedef Bits<T> B;
  typedef typename B::U U;
  // Range limits as functions: MSL allows static data members only in the constant address space.
  // For x in [lo, hi], k = round(x log2(e)) lies in [-126, 128].
  static DF_INLINE float lo() { return -87.5f; }
  static DF_INLINE float hi() { return 89.0f; }
  // exp(x) for x in [lo, hi] (NaN in, NaN out).
  static DF_INLINE T core(T x) {
    // Round x*log2(e) to an integer with the 1.5*2^23 trick, offset by 126: the sum's low 9
    // mantissa bits hold k + 126 in [0, 254], so shifting its bits left by 23 moves them into the
    // exponent field: the float 2^(k-1) (k = 128 stays representable and overflows to inf exactly
    // when x > ln(FLT_MAX); k = -126 gives the scale 0, a flush). The polynomial's coefficients are
    // doubled (exactly) to make up the 2^-1.
    const T shifted = x * 1.44269504088896341f + 12583038.0f;  // 1.5 * 2^23 + 126
    const T kf = shifted - 12583038.0f;
    T r = x - kf * 0.693359375f;  // ln2 split in two: the first product is exact
    r = r - kf * -2.12194440e-4f;
    T p = r * 2.76871910e-3f + 1.67482849e-2f;  // 2 * the minimax coefficients of e^r, highest first
    p = p * r + 8.33360031e-2f;
    p = p * r + 3.33328635e-1f;
    p = p * r + 9.99999881e-1f;
    p = p * r + 2.0f;
    p = p * r + 2.0f;
    return p * B::from_bits((U)B::bits(shifted) << 23);
  }
  // Clamping x into [lo, hi] is all the range handling needed (see core).
  static DF_INLINE T eval(T x) {
    const float lo_ = lo(), hi_ = hi();
    T xc = x < lo_ ? lo_ : x;  // comparisons are false for NaN: NaN flows on
    xc = xc > hi_ ? hi_ : xc;
    return core(xc);
  }
};

// ---- log on [1, 2] (all softplus needs) -------------------------------------------------------------
// Cephes' logf: y = m 2^e with m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial in m - 1 (about
// 1 ulp). Branch-free: the bits are shifted so the mantissa lands in that range without selects.
template <typename T>
struct Log12 {
  typedef Bits<T> B;
  static DF_INLINE T eval(T y) {
    const typename B::I ix = B::bits(y) - 0x3f3504f3;
    const T e = B::from_int(ix >> 23);
    const T m = B::from_bits((typename B::U)((ix & 0x007fffff) + 0x3f3504f3)) - 1.0f;
    const T z = m * m;
    T p = m * 7.0376836292e-2f - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    T r = m * z * p;
    r = r + e * -2.12194440e-4f;
    r = r - 0.5f * z;
    return m + r + e * 0.693359375f;
  }
};

// ---- softplus -----------------------------------------------------------------------------------
// softplus(x) = log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): no overflow. A NaN x stays NaN
// through the first term, whatever the second computes from it.
template <typename T>
struct Softplus {
  typedef Bits<T> B;
  typedef typename B::U U;
  static DF_INLINE T eval(T x) {
    // Shaped so GCC vectorises loops over it (a float select here defeats its if-conversion):
    // max(x, 0) as (x + |x|) / 2, which also carries a NaN through; exp(-|x|) needs only |x|
    // clamped to 86.5 (beyond, 1 + exp rounds to 1), done as an integer min on the bit pattern
    // (ordered like the values for non-negative floats).
    const T ax = B::from_bits((U)B::bits(x) & 0x7fffffffu);
    const int lim = 0x42ad0000;  // bits of 86.5f
    typename B::I ab = B::bits(ax);
    ab = ab < lim ? ab : lim;
    const T e = -B::from_bits((U)ab);
    return 0.5f * (x + ax) + Log12<T>::eval(1.0f + Exp<T>::core(e));
  }
};

// ---- tanh -----------------------------------------------------------------------------------------
// float: 1 - 2/(e^{2x}+1) through the exp above: absolute error ~1e-7 (relative error grows only
// where tanh(x) ~ 0); saturates to -1 and 1 exactly where exp under- and overflows.
template <typename T>
struct Tanh {
  static DF_INLINE T eval(T x) { return 1.0f - 2.0f / (Exp<T>::eval(2.0f * x) + 1.0f); }
};

#if !defined(__METAL_VERSION__)
template <>
struct Exp<double> {
  static DF_INLINE double eval(double x) { return std::exp(x); }
};
template <>
struct Softplus<double> {
  static DF_INLINE double eval(double x) { return (x < 0 ? 0 : x) + std::log1p(std::exp(-std::abs(x))); }
};
template <>
struct Tanh<double> {
  static DF_INLINE double eval(double x) { return std::tanh(x); }
};
#endif

template <typename T>
DF_INLINE T exp(T x) { return Exp<T>::eval(x); }

template <typename T>
DF_INLINE T softplus(T x) { return Softplus<T>::eval(x); }

template <typename T>
DF_INLINE T sigmoid(T x) {
  typedef Scalar<T> S;
  return S(1) / (S(1) + Exp<T>::eval(-x));
}

template <typename T>
DF_INLINE T tanh(T x) { return Tanh<T>::eval(x); }

}  // namespace fastmath
}  // namespace dfk
