// Stub of <mach/mach.h> for tools/macos_check.sh: metal-cpp needs only the kernel return type.
#pragma once
typedef int kern_return_t;
typedef unsigned int mach_port_t;
typedef mach_port_t task_id_token_t;
