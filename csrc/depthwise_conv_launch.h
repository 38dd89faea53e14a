// Metal launch plan of the depthwise frequency conv, shared by eval_gpu (depthwise_conv_metal.cpp) and
// the emulated-Metal harness (metal_emu/depthwise_conv_emu.cpp) so both run exactly the same grids.
#pragma once

#include "kernels/depthwise_conv_params.h"
#include "launch_plan.h"

namespace dfnet4::dw_launch {

using namespace launch;

// metal/depthwise_conv.metal. Forward: gather, or scatter when transposed. Backward: the other
// one for dx, then the weight-gradient partials and their fold.
inline const char* gather_kernel() { return "dfnet4_dw_gather_f32"; }
inline const char* scatter_kernel() { return "dfnet4_dw_scatter_f32"; }
inline const char* weight_grad_kernel() { return "dfnet4_dw_weight_grad_f32"; }
inline const char* fold_kernel() { return "dfnet4_dw_fold_f32"; }

// Block kernels: one thread per (channel, block of rows); no collectives, so any group shape works.
inline Size3 block_grid(const dfk::DwParams& p) { return {(unsigned long)p.channels, (unsigned long)p.n_blocks, 1}; }
inline Size3 block_group(const dfk::DwParams& p) { return {group_width(p.channels), 1, 1}; }
// Fold: one thread per weight entry (K * C), blocks in order.
inline Size3 fold_grid(const dfk::DwParams& p) { return {(unsigned long)p.width * p.channels, 1, 1}; }
inline Size3 fold_group(const dfk::DwParams& p) { return {group_width((unsigned long)p.width * p.channels), 1, 1}; }

// Buffer indices (metal/depthwise_conv.metal): gather and scatter share one layout.
enum MapBuffer { kMapIn, kMapWeight, kMapOut, kMapParams };
enum WeightGradBuffer { kWgBig, kWgSmall, kWgPart, kWgParams };
enum FoldBuffer { kFoldPart, kFoldDweight, kFoldParams };

}  // namespace dfnet4::dw_launch
