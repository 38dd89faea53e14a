// Ends the Metal part of a harness: removes the keyword macros of <metal_stdlib> (emu_keywords.h)
// so that host code (nanobind, std::thread, double, ...) compiles after the .metal includes.
#undef device
#undef constant
#undef thread
#undef threadgroup
#undef kernel
#undef double
