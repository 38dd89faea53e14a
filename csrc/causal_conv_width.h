// The conv kernels are instantiated per width K (a compile-time loop bound); this turns the runtime
// width into that instantiation, for every K from 1 to dfk::kConvMaxWidth. Shared by the CPU eval
// and the emulated-Metal harness.
#pragma once

#include <stdexcept>
#include <string>

#include "kernels/causal_conv_params.h"

namespace dfnet4::conv_width {

// Calls f.template operator()<K>() for K = width (1 .. dfk::kConvMaxWidth).
template <int K = 1, typename F>
void with_width(int width, F&& f) {
  if (width == K) return f.template operator()<K>();
  if constexpr (K < dfk::kConvMaxWidth) {
    return with_width<K + 1>(width, static_cast<F&&>(f));
  } else {
    throw std::invalid_argument("causal_conv1d: no kernel for width " + std::to_string(width) + " (1 to " +
                                std::to_string(static_cast<int>(dfk::kConvMaxWidth)) + ")");
  }
}

}  // namespace dfnet4::conv_width
