// CPU drivers of the depthwise frequency-conv kernel bodies: loop the bodies of
// kernels/depthwise_conv.h over (block of rows, channel span) on our own threads.
#pragma once

#include "kernels/depthwise_conv_params.h"

namespace dfnet4::dw_cpu {

// gather (big -> small) or scatter (small -> big) of `in` into `out`.
void gather(const dfk::DwParams& p, const float* in, const float* weight, float* out);
void gather(const dfk::DwParams& p, const double* in, const double* weight, double* out);
void scatter(const dfk::DwParams& p, const float* in, const float* weight, float* out);
void scatter(const dfk::DwParams& p, const double* in, const double* weight, double* out);
// dweight (K, C) from the two sides; part: (n_blocks, K, C) scratch.
void weight_grad(const dfk::DwParams& p, const float* big_side, const float* small_side, float* part, float* dweight);
void weight_grad(const dfk::DwParams& p, const double* big_side, const double* small_side, double* part,
                 double* dweight);

}  // namespace dfnet4::dw_cpu
