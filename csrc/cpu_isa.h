// The one way the CPU drivers pick an instruction set. On x86-64 (GCC >= 12) a hot loop is compiled
// three times, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline, so one wheel is
// both portable and fast; the best variant this CPU has runs, capped by DFNET4_CPU_ISA=generic|avx2
// (so the tests can run every variant on one machine). Elsewhere (clang, arm64 with NEON as its
// baseline) every variant is the baseline one.
//
// A loop is a struct K with `template <Isa> static DF_INLINE void run(args...)`: always-inline, so
// its body (and the kernel bodies it calls, also always-inline) is compiled inside each variant's
// out-of-line entry point below with that variant's instruction set. The template argument lets a
// loop choose its own blocking per instruction set (the GRU's register tiles).
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define DFNET4_ISA_VARIANTS 1
// The instruction sets of x86-64-v3 and -v4, named one by one rather than as target("arch=...")
// (which would also change the arch, and GCC then inlines no ordinary helper, std::min say, into them).
#define DFNET4_X86_V3 "avx2,fma,bmi,bmi2,f16c,lzcnt,movbe,popcnt,sse4.2"
#define DFNET4_TARGET_AVX2 __attribute__((target(DFNET4_X86_V3)))
#define DFNET4_TARGET_AVX512 __attribute__((target(DFNET4_X86_V3 ",avx512f,avx512bw,avx512cd,avx512dq,avx512vl")))
#endif

namespace dfnet4::isa {

enum class Isa { Generic, Avx2, Avx512 };

// The best variant this CPU runs, capped by DFNET4_CPU_ISA; read on every call (once per eval),
// so a test may change the variable between calls.
inline Isa best() {
  Isa isa = Isa::Generic;
#ifdef DFNET4_ISA_VARIANTS
  if (__builtin_cpu_supports("x86-64-v3")) isa = Isa::Avx2;
  if (__builtin_cpu_supports("x86-64-v4")) isa = Isa::Avx512;
#endif
  const char* cap = std::getenv("DFNET4_CPU_ISA");
  if (cap && std::strcmp(cap, "generic") == 0) return Isa::Generic;
  if (cap && std::strcmp(cap, "avx2") == 0 && isa == Isa::Avx512) return Isa::Avx2;
  return isa;
}

// Out-of-line entry points, one per variant (noinline: a loop inlined into its caller's bigger
// loop may no longer vectorise).
namespace detail {
template <class K, class... A>
__attribute__((noinline)) void generic(A... a) {
  K::template run<Isa::Generic>(a...);
}
#ifdef DFNET4_ISA_VARIANTS
template <class K, class... A>
DFNET4_TARGET_AVX2 __attribute__((noinline)) void avx2(A... a) {
  K::template run<Isa::Avx2>(a...);
}
template <class K, class... A>
DFNET4_TARGET_AVX512 __attribute__((noinline)) void avx512(A... a) {
  K::template run<Isa::Avx512>(a...);
}
#endif
}  // namespace detail

template <class... A>
using Entry = void (*)(A...);

// K's entry point for `isa` (the baseline one where this build has no variants).
template <class K, class... A>
Entry<A...> variant(Isa isa) {
#ifdef DFNET4_ISA_VARIANTS
  if (isa == Isa::Avx512) return detail::avx512<K, A...>;
  if (isa == Isa::Avx2) return detail::avx2<K, A...>;
#endif
  (void)isa;
  return detail::generic<K, A...>;
}

// Calls K's variant for a compile-time `isa` directly (from inside another variant's loop).
template <Isa isa, class K, class... A>
inline void call(A... a) {
#ifdef DFNET4_ISA_VARIANTS
  if constexpr (isa == Isa::Avx512) return detail::avx512<K, A...>(a...);
  if constexpr (isa == Isa::Avx2) return detail::avx2<K, A...>(a...);
#endif
  detail::generic<K, A...>(a...);
}

}  // namespace dfnet4::isa
