// Metal kernels of the causal conv: thin wrappers that map GPU thread positions onto the shared
// kernel bodies (csrc/kernels/causal_conv_{fwd,bwd}.h). Launch plan: csrc/causal_conv_launch.h.
// Inputs are float32 (the op casts half/bfloat16 inputs); the GPU has no double.
#include <metal_stdlib>

using namespace metal;

#include "kernels/causal_conv_bwd.h"
#include "kernels/causal_conv_fwd.h"

// One thread per (channel, chunk, batch) = gid; a span of one channel.
template <int K>
[[kernel]] void dfnet4_causal_conv_fwd(
    device const float* x [[buffer(0)]], device const float* window [[buffer(1)]],
    device const float* weight [[buffer(2)]], device const float* bias [[buffer(3)]],
    device float* y [[buffer(4)]], device float* new_window [[buffer(5)]],
    constant dfk::ConvParams& params [[buffer(6)]], uint3 gid [[thread_position_in_grid]]) {
  const dfk::ConvParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::conv_forward_item<float, K, 1, 1>(p, (int)gid.z, (int)gid.y, (int)gid.x, 1, x, window, weight, bias,
                                      y, new_window);
}

template <int K>
[[kernel]] void dfnet4_causal_conv_bwd(
    device const float* x [[buffer(0)]], device const float* window [[buffer(1)]],
    device const float* weight [[buffer(2)]], device const float* bias [[buffer(3)]],
    device const float* dy [[buffer(4)]], device const float* dnew_window [[buffer(5)]],
    device float* dx [[buffer(6)]], device float* dwindow [[buffer(7)]],
    device float* dw_part [[buffer(8)]], device float* db_part [[buffer(9)]],
    constant dfk::ConvParams& params [[buffer(10)]], uint3 gid [[thread_position_in_grid]]) {
  const dfk::ConvParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::conv_backward_item<float, K, 1, 1>(p, (int)gid.z, (int)gid.y, (int)gid.x, 1, x, window, weight, bias,
                                       dy, dnew_window, dx, dwindow, dw_part, db_part);
}

// Folds partial sums: dst[j] = sum_k src[k * inner + j]; thread j.
[[kernel]] void dfnet4_causal_conv_sum_f32(
    device const float* src [[buffer(0)]], device float* dst [[buffer(1)]],
    constant int& count [[buffer(2)]], constant int& inner [[buffer(3)]],
    uint gid [[thread_position_in_grid]]) {
  if ((int)gid >= inner) return;
  dfk::conv_sum_partials<float, 1>(src, dst, count, inner, (long)gid, 1);
}

#define DFNET4_CONV_INSTANTIATE(K)                                                          \
  template [[host_name("dfnet4_causal_conv_fwd_f32_k" #K)]] [[kernel]]                     \
  decltype(dfnet4_causal_conv_fwd<K>) dfnet4_causal_conv_fwd<K>;                           \
  template [[host_name("dfnet4_causal_conv_bwd_f32_k" #K)]] [[kernel]]                     \
  decltype(dfnet4_causal_conv_bwd<K>) dfnet4_causal_conv_bwd<K>;

// Widths 1 .. dfk::kConvMaxWidth; must match conv_launch::forward_kernel / backward_kernel.
DFNET4_CONV_INSTANTIATE(1)
DFNET4_CONV_INSTANTIATE(2)
DFNET4_CONV_INSTANTIATE(3)
DFNET4_CONV_INSTANTIATE(4)
DFNET4_CONV_INSTANTIATE(5)
DFNET4_CONV_INSTANTIATE(6)
DFNET4_CONV_INSTANTIATE(7)
DFNET4_CONV_INSTANTIATE(8)
