// The Metal keywords as C++ macros. Not include-guarded on purpose: <metal_stdlib> re-applies them
// after an "emu_end.h" removed them (a second .metal file in the same harness).
#ifndef __METAL_VERSION__
#define __METAL_VERSION__ 310
#endif

// Address spaces. In the emulation every pointer is an ordinary host pointer.
#define device
#define constant
#define thread
// `threadgroup` must work both as a qualifier (`threadgroup float* buf`) and inside the attribute
// `[[threadgroup(0)]]`; an empty macro would turn the latter into `[[(0)]]`. `register` is the one
// ignorable decl-specifier that is also a valid (unknown, ignored) attribute name. Limitation: it
// is not allowed in a type-id, so `(threadgroup float4*)p` or `using P = threadgroup T*;` do not
// compile here; declare the kernel parameter with the type you need instead.
#define threadgroup register
#define kernel

// There is no double in Metal: any use in a kernel fails to compile with this name in the error.
#define double metal_emu_error_double_is_not_a_Metal_type

#if defined(__clang__)
#pragma clang diagnostic ignored "-Wregister"
#pragma clang diagnostic ignored "-Wunknown-attributes"
#else
#pragma GCC diagnostic ignored "-Wregister"
#pragma GCC diagnostic ignored "-Wattributes"
#endif


// Strict mode (-DMETAL_EMU_STRICT, used by tests/test_metal_emu.py to compile every .metal file on
// its own): C++ features the Metal language lacks also fail to compile. Not the default, because a
// harness may include host headers between <metal_stdlib> and "emu_end.h".
#ifdef METAL_EMU_STRICT
#define std metal_emu_error_no_std_namespace_in_MSL
#define new metal_emu_error_no_dynamic_allocation_in_MSL
#define throw metal_emu_error_no_exceptions_in_MSL
#define try metal_emu_error_no_exceptions_in_MSL
#define catch metal_emu_error_no_exceptions_in_MSL
#define virtual metal_emu_error_no_virtual_functions_in_MSL
#define dynamic_cast metal_emu_error_no_RTTI_in_MSL
#define typeid metal_emu_error_no_RTTI_in_MSL
#define printf metal_emu_error_no_printf_in_MSL
#define malloc metal_emu_error_no_dynamic_allocation_in_MSL
#define free metal_emu_error_no_dynamic_allocation_in_MSL
#endif
