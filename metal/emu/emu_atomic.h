// Metal atomics for the CPU emulation. Only one logical thread runs at a time (emu_launch.h), so
// plain loads and stores are atomic here; the types keep Metal's spelling and signatures so that a
// kernel using them compiles unchanged. Memory orders are accepted and ignored.
#pragma once

#include <type_traits>

#include "emu_types.h"

namespace metal {

enum memory_order { memory_order_relaxed, memory_order_acquire, memory_order_release,
                    memory_order_acq_rel, memory_order_seq_cst };

template <class T>
struct atomic {
  static_assert(std::is_same_v<T, int> || std::is_same_v<T, uint> || std::is_same_v<T, bool> ||
                    std::is_same_v<T, float> || std::is_same_v<T, unsigned long>,
                "Metal atomics are int, uint, bool, float (and ulong min/max)");
  T value;
};
using atomic_int = atomic<int>;
using atomic_uint = atomic<uint>;
using atomic_bool = atomic<bool>;
using atomic_float = atomic<float>;

namespace emu_detail {
// Volatile access: a spin-wait on an atomic really re-reads memory (no UB endless loop).
template <class T>
inline volatile T& ref(volatile atomic<T>* a) { return a->value; }
}  // namespace emu_detail

template <class T>
inline void atomic_store_explicit(volatile atomic<T>* a, T v, memory_order) { emu_detail::ref(a) = v; }
template <class T>
inline T atomic_load_explicit(volatile atomic<T>* a, memory_order) { return emu_detail::ref(a); }
template <class T>
inline T atomic_exchange_explicit(volatile atomic<T>* a, T v, memory_order) {
  T old = emu_detail::ref(a);
  emu_detail::ref(a) = v;
  return old;
}
template <class T>
inline bool atomic_compare_exchange_weak_explicit(volatile atomic<T>* a, T* expected, T desired,
                                                  memory_order, memory_order) {
  volatile T& v = emu_detail::ref(a);
  if (v == *expected) {
    v = desired;
    return true;
  }
  *expected = v;
  return false;
}

#define METAL_EMU_ATOMIC_RMW(name, expr)                                                     \
  template <class T, class U>                                                               \
  inline T name(volatile atomic<T>* a, U operand, memory_order) {                          \
    volatile T& v = emu_detail::ref(a);                                                     \
    const T old = v;                                                                        \
    const T o = T(operand);                                                                 \
    v = (expr);                                                                             \
    return old;                                                                             \
  }
METAL_EMU_ATOMIC_RMW(atomic_fetch_add_explicit, T(old + o))
METAL_EMU_ATOMIC_RMW(atomic_fetch_sub_explicit, T(old - o))
METAL_EMU_ATOMIC_RMW(atomic_fetch_and_explicit, T(old & o))
METAL_EMU_ATOMIC_RMW(atomic_fetch_or_explicit, T(old | o))
METAL_EMU_ATOMIC_RMW(atomic_fetch_xor_explicit, T(old ^ o))
METAL_EMU_ATOMIC_RMW(atomic_fetch_max_explicit, (o > old ? o : old))
METAL_EMU_ATOMIC_RMW(atomic_fetch_min_explicit, (o < old ? o : old))
#undef METAL_EMU_ATOMIC_RMW

}  // namespace metal
