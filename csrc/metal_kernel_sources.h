// The Metal kernels as source text: one library per metal/<op>.metal, with every header it includes
// (csrc/kernels/*.h) inlined. tools/metal_embed.py generates the definition of all() at build time
// (CMake: build/.../generated/metal_kernel_sources.cpp), so the .metal wrappers and the shared
// kernel bodies stay the one source of truth. Metal builds compile a library from this text at
// first use (metal_host.h); every build carries it, so the tests can check what a Mac compiles.
#pragma once

#include <string_view>
#include <vector>

namespace dfnet4::metal_kernels {

struct Source {
  const char* library;  // the wrapper's stem: "selective_scan", "causal_conv", "gru"
  const char* text;     // self-contained Metal source
};

// Every library, in file-name order (generated).
const std::vector<Source>& all();

// The source of `library`, or nullptr when there is no such wrapper.
const char* find(std::string_view library);

}  // namespace dfnet4::metal_kernels
