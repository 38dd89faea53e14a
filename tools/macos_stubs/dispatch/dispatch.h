// Stub of <dispatch/dispatch.h> for tools/macos_check.sh: the object types metal-cpp names.
#pragma once
typedef struct dispatch_queue_s* dispatch_queue_t;
typedef struct dispatch_data_s* dispatch_data_t;
