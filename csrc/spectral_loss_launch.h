// Metal launch plan of the compressed spectral loss, shared by eval_gpu (spectral_loss_metal.cpp) and
// the emulated-Metal harness (metal_emu/spectral_loss_emu.cpp) so both run exactly the same grids.
#pragma once

#include "kernels/spectral_loss_params.h"
#include "launch_plan.h"

namespace dfnet4::sl_launch {

using namespace launch;

// Forward: the chunk kernel, then the fold (metal/spectral_loss.metal); backward: one kernel.
inline const char* forward_kernel() { return "dfnet4_spectral_loss_fwd_f32"; }
inline const char* fold_kernel() { return "dfnet4_spectral_loss_fold_f32"; }
inline const char* backward_kernel() { return "dfnet4_spectral_loss_bwd_f32"; }

// Chunk kernels: one thread per chunk of pairs; no collectives, so any group shape works.
inline Size3 chunk_grid(const dfk::SlParams& p) { return {(unsigned long)p.n_chunks, 1, 1}; }
inline Size3 chunk_group(const dfk::SlParams& p) { return {group_width(p.n_chunks), 1, 1}; }
// Fold: one thread per term (mag, cplx).
inline Size3 fold_grid() { return {2, 1, 1}; }
inline Size3 fold_group() { return {2, 1, 1}; }

// Buffer indices of the kernels (metal/spectral_loss.metal).
enum ForwardBuffer { kFwdPred, kFwdTarget, kFwdPart, kFwdParams, kFwdGamma };
enum FoldBuffer { kFoldPart, kFoldMag, kFoldCplx, kFoldParams };
enum BackwardBuffer { kBwdPred, kBwdTarget, kBwdDmag, kBwdDcplx, kBwdDpred, kBwdDtarget, kBwdParams, kBwdGamma };

}  // namespace dfnet4::sl_launch
