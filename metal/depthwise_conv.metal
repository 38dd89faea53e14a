// Metal kernels of the depthwise frequency conv: thin wrappers that map GPU thread positions onto the
// shared kernel bodies (csrc/kernels/depthwise_conv.h). Launch plan: csrc/depthwise_conv_launch.h.
// Inputs are float32 (the op casts half/bfloat16 inputs); the GPU has no double.
#include <metal_stdlib>

using namespace metal;

#include "kernels/depthwise_conv.h"

// One thread per (channel, block of rows) = gid.xy; a span of one channel.
[[kernel]] void dfnet4_dw_gather_f32(
    device const float* in [[buffer(0)]], device const float* weight [[buffer(1)]], device float* out [[buffer(2)]],
    constant dfk::DwParams& params [[buffer(3)]], uint3 gid [[thread_position_in_grid]]) {
  const dfk::DwParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::dw_gather_item<float, 1, 1>(p, (int)gid.y, (int)gid.x, 1, in, weight, out);
}

[[kernel]] void dfnet4_dw_scatter_f32(
    device const float* in [[buffer(0)]], device const float* weight [[buffer(1)]], device float* out [[buffer(2)]],
    constant dfk::DwParams& params [[buffer(3)]], uint3 gid [[thread_position_in_grid]]) {
  const dfk::DwParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::dw_scatter_item<float, 1, 1>(p, (int)gid.y, (int)gid.x, 1, in, weight, out);
}

[[kernel]] void dfnet4_dw_weight_grad_f32(
    device const float* big_side [[buffer(0)]], device const float* small_side [[buffer(1)]],
    device float* part [[buffer(2)]], constant dfk::DwParams& params [[buffer(3)]],
    uint3 gid [[thread_position_in_grid]]) {
  const dfk::DwParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::dw_weight_grad_item<float, 1, 1>(p, (int)gid.y, (int)gid.x, 1, big_side, small_side, part);
}

// Thread j folds weight entry j (of K * C) over the blocks, in order.
[[kernel]] void dfnet4_dw_fold_f32(
    device const float* part [[buffer(0)]], device float* dweight [[buffer(1)]],
    constant dfk::DwParams& params [[buffer(2)]], uint gid [[thread_position_in_grid]]) {
  const dfk::DwParams p = params;
  const long inner = (long)p.width * p.channels;
  if ((long)gid >= inner) return;
  dfk::conv_sum_partials<float, 1>(part, dweight, p.n_blocks, inner, (long)gid, 1);
}
