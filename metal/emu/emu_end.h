// Ends the Metal part of a harness: removes the keyword macros of <metal_stdlib> (emu_keywords.h)
// so that host code (nanobind, std::thread, double, ...) compiles after the .metal includes.
#undef device
#undef constant
#undef thread
#undef threadgroup
#undef kernel
#undef double
#ifdef METAL_EMU_STRICT
#undef std
#undef new
#undef throw
#undef try
#undef catch
#undef virtual
#undef dynamic_cast
#undef typeid
#undef printf
#undef malloc
#undef free
#endif
