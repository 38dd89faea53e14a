// Helpers for the BLAS shim: a plain shared library that exports the standard BLAS/LAPACK names
// libmlx imports and forwards each call to the scipy_-prefixed copy in scipy-openblas32.
#pragma once

#define DFNET4_SHIM_EXPORT extern "C" __attribute__((visibility("default")))

// Declares `alias` with exactly the function type of `declared`. A forwarder defined after it
// with different parameters is a compile error (two C functions cannot share a name), so every
// forwarder below provably has the signature the header gives the routine.
#define DFNET4_SAME_SIGNATURE(alias, declared) extern "C" decltype(declared) alias;
