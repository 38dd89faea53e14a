// Metal kernels of the compressed spectral loss: thin wrappers that map GPU thread positions onto the
// shared kernel bodies (csrc/kernels/spectral_loss.h). Launch plan: csrc/spectral_loss_launch.h.
// Inputs are float32 pairs (complex64 viewed as floats); the GPU has no double.
#include <metal_stdlib>

using namespace metal;

#include "kernels/spectral_loss.h"

// One thread per chunk of pairs: its two partial sums.
[[kernel]] void dfnet4_spectral_loss_fwd_f32(
    device const float* pred [[buffer(0)]], device const float* target [[buffer(1)]],
    device float* part [[buffer(2)]], constant dfk::SlParams& params [[buffer(3)]],
    constant float& gamma [[buffer(4)]], uint gid [[thread_position_in_grid]]) {
  const dfk::SlParams p = params;
  if ((int)gid >= p.n_chunks) return;
  dfk::sl_forward_item<float>(p, (int)gid, gamma, pred, target, part);
}

// Thread k folds term k's partials in chunk order (k = 0: mag, 1: cplx).
[[kernel]] void dfnet4_spectral_loss_fold_f32(
    device const float* part [[buffer(0)]], device float* mag [[buffer(1)]], device float* cplx [[buffer(2)]],
    constant dfk::SlParams& params [[buffer(3)]], uint gid [[thread_position_in_grid]]) {
  const dfk::SlParams p = params;
  if (gid >= 2u) return;
  dfk::sl_fold<float>(p, (int)gid, part, gid == 0u ? mag : cplx);
}

// One thread per chunk: the gradients of its pairs.
[[kernel]] void dfnet4_spectral_loss_bwd_f32(
    device const float* pred [[buffer(0)]], device const float* target [[buffer(1)]],
    device const float* dmag [[buffer(2)]], device const float* dcplx [[buffer(3)]],
    device float* dpred [[buffer(4)]], device float* dtarget [[buffer(5)]],
    constant dfk::SlParams& params [[buffer(6)]], constant float& gamma [[buffer(7)]],
    uint gid [[thread_position_in_grid]]) {
  const dfk::SlParams p = params;
  if ((int)gid >= p.n_chunks) return;
  dfk::sl_backward_item<float>(p, (int)gid, gamma, pred, target, dmag, dcplx, dpred, dtarget);
}
