// Each source file registers its own Python bindings, so adding a primitive never edits a shared file.
#pragma once
#include <nanobind/nanobind.h>
#include <vector>

namespace dfnet4 {

using Binder = void (*)(nanobind::module_&);

inline std::vector<Binder>& binders() {
  static std::vector<Binder> all;
  return all;
}

struct RegisterBinding {
  explicit RegisterBinding(Binder b) { binders().push_back(b); }
};

}  // namespace dfnet4

#define DFNET4_CONCAT_(a, b) a##b
#define DFNET4_CONCAT(a, b) DFNET4_CONCAT_(a, b)
// Usage at namespace scope in a .cpp: DFNET4_REGISTER_BINDING(my_bind_function);
#define DFNET4_REGISTER_BINDING(fn) \
  static ::dfnet4::RegisterBinding DFNET4_CONCAT(dfnet4_binding_, __LINE__)(fn)
