// Stub of <objc/message.h> for tools/macos_check.sh: metal-cpp casts these to the signature it needs.
#pragma once
#include <objc/runtime.h>

extern "C" {
void objc_msgSend(void);
void objc_msgSend_stret(void);
void objc_msgSend_fpret(void);
}
