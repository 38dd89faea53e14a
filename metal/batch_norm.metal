// Metal kernels of the batch norm: thin wrappers that map GPU thread positions onto the shared
// kernel bodies (csrc/kernels/batch_norm.h). Launch plan: csrc/batch_norm_launch.h.
// Inputs are float32 (the op casts half/bfloat16 inputs); the GPU has no double.
#include <metal_stdlib>

using namespace metal;

#include "kernels/batch_norm.h"

// Block passes: one thread per (channel, block of rows) = gid.xy; a span of one channel.
[[kernel]] void dfnet4_bn_stats_f32(
    device const float* x [[buffer(0)]], device float* part_mean [[buffer(1)]],
    device float* part_m2 [[buffer(2)]], constant dfk::BnParams& params [[buffer(3)]],
    uint3 gid [[thread_position_in_grid]]) {
  const dfk::BnParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::bn_stats_item<float, 1, 1>(p, (int)gid.y, (int)gid.x, 1, x, part_mean, part_m2);
}

[[kernel]] void dfnet4_bn_apply_f32(
    device const float* x [[buffer(0)]], device const float* weight [[buffer(1)]],
    device const float* bias [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* var [[buffer(4)]], device float* y [[buffer(5)]],
    constant dfk::BnParams& params [[buffer(6)]], constant float& eps [[buffer(7)]],
    uint3 gid [[thread_position_in_grid]]) {
  const dfk::BnParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::bn_apply_item<float, 1, 1>(p, (int)gid.y, (int)gid.x, 1, x, weight, bias, mean, var, eps, y);
}

[[kernel]] void dfnet4_bn_grad_stats_f32(
    device const float* x [[buffer(0)]], device const float* weight [[buffer(1)]],
    device const float* bias [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* var [[buffer(4)]], device const float* dy [[buffer(5)]],
    device float* part_g [[buffer(6)]], device float* part_gx [[buffer(7)]],
    constant dfk::BnParams& params [[buffer(8)]], constant float& eps [[buffer(9)]],
    uint3 gid [[thread_position_in_grid]]) {
  const dfk::BnParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::bn_grad_stats_item<float, 1, 1>(p, (int)gid.y, (int)gid.x, 1, x, weight, bias, mean, var, eps, dy, part_g,
                                       part_gx);
}

[[kernel]] void dfnet4_bn_grad_apply_f32(
    device const float* x [[buffer(0)]], device const float* weight [[buffer(1)]],
    device const float* bias [[buffer(2)]], device const float* mean [[buffer(3)]],
    device const float* var [[buffer(4)]], device const float* dy [[buffer(5)]],
    device const float* dmean [[buffer(6)]], device const float* dvar [[buffer(7)]],
    device const float* dweight [[buffer(8)]], device const float* dbias [[buffer(9)]],
    device float* dx [[buffer(10)]], constant dfk::BnParams& params [[buffer(11)]],
    constant float& eps [[buffer(12)]], uint3 gid [[thread_position_in_grid]]) {
  const dfk::BnParams p = params;
  if ((int)gid.x >= p.channels) return;
  dfk::bn_grad_apply_item<float, 1, 1>(p, (int)gid.y, (int)gid.x, 1, x, weight, bias, mean, var, eps, dy, dmean,
                                       dvar, dweight, dbias, dx);
}

// Folds: one thread per channel, blocks in order.
[[kernel]] void dfnet4_bn_combine_f32(
    device const float* part_mean [[buffer(0)]], device const float* part_m2 [[buffer(1)]],
    device float* mean [[buffer(2)]], device float* var [[buffer(3)]],
    constant dfk::BnParams& params [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  const dfk::BnParams p = params;
  if ((int)gid >= p.channels) return;
  dfk::bn_stats_combine<float>(p, (int)gid, part_mean, part_m2, mean, var);
}

[[kernel]] void dfnet4_bn_grad_combine_f32(
    device const float* part_g [[buffer(0)]], device const float* part_gx [[buffer(1)]],
    device const float* var [[buffer(2)]], device float* dweight [[buffer(3)]],
    device float* dbias [[buffer(4)]], constant dfk::BnParams& params [[buffer(5)]],
    constant float& eps [[buffer(6)]], uint gid [[thread_position_in_grid]]) {
  const dfk::BnParams p = params;
  if ((int)gid >= p.channels) return;
  dfk::bn_grad_combine<float>(p, (int)gid, part_g, part_gx, var, eps, dweight, dbias);
}
