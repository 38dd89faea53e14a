// Stub of <objc/runtime.h> for tools/macos_check.sh: what metal-cpp uses.
#pragma once
#include <stdint.h>

typedef struct objc_class* Class;
struct objc_object {  // complete, as in the SDK: metal-cpp's NS::Object derives from it
  Class isa;
};
typedef struct objc_object* id;
typedef struct objc_selector* SEL;
typedef struct objc_object Protocol;
typedef bool BOOL;

extern "C" {
id objc_lookUpClass(const char* name);
Protocol* objc_getProtocol(const char* name);
SEL sel_registerName(const char* str);
}
