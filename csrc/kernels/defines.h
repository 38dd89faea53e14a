// Shared by every kernel body in csrc/kernels/: the few words that differ between C++ and the
// Metal Shading Language. Kernel bodies use only what both accept (docs/architecture.md, one body
// for every backend): no std::, no exceptions, no recursion, no allocation, no double unless
// templated for the CPU only.
//
// __METAL_VERSION__ is defined by the real Metal compiler and by the emulation header
// (metal/emu/metal_stdlib), so the emulated build takes exactly the Metal path below.
#pragma once

#if defined(__METAL_VERSION__)
#include <metal_stdlib>
#define DF_DEVICE device
#define DF_CONSTANT constant
#define DF_THREADGROUP threadgroup
#define DF_THREAD thread
#define DF_MATH metal
#define DF_INLINE inline
#define DF_RESTRICT
#define DF_PREFETCH(ptr) ((void)(ptr))
#else
#include <cmath>
#define DF_DEVICE
#define DF_CONSTANT
#define DF_THREADGROUP
#define DF_THREAD
#define DF_MATH std
// The bodies must inline into the CPU drivers' ISA-specific loops (cpu_isa.h) to vectorise there.
#define DF_INLINE inline __attribute__((always_inline))
#define DF_RESTRICT __restrict__
#define DF_PREFETCH(ptr) __builtin_prefetch(ptr)
#endif
