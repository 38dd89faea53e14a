// Stub of <IOSurface/IOSurfaceRef.h> for tools/macos_check.sh.
#pragma once
typedef struct __IOSurface* IOSurfaceRef;
