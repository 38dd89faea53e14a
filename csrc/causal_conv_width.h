// The conv kernels are instantiated per width K (a compile-time loop bound); this turns the runtime
// width into that instantiation. Shared by the CPU eval and the emulated-Metal harness.
#pragma once

#include <stdexcept>

namespace dfnet4::conv_width {

inline constexpr int kMaxWidth = 8;  // = dfk::kConvMaxWidth (static_assert where both are visible)

// Calls f.template operator()<K>() for K = width (1 .. kMaxWidth).
template <typename F>
void with_width(int width, F&& f) {
  switch (width) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 5: return f.template operator()<5>();
    case 6: return f.template operator()<6>();
    case 7: return f.template operator()<7>();
    case 8: return f.template operator()<8>();
    default: throw std::invalid_argument("causal_conv1d: no kernel for this width");
  }
}

}  // namespace dfnet4::conv_width
