// CPU drivers of the selective-scan kernel bodies: loop the per-(batch, channel) bodies of
// kernels/selective_scan_{fwd,bwd}.h over the grid on dfnet4::parallel_for's threads.
#pragma once

#include "kernels/selective_scan_params.h"

namespace dfnet4::scan_cpu {

// Raw, contiguous buffers; optional inputs and outputs are null when their flag is off.
template <typename T>
struct ForwardBuffers {
  const T *u, *delta, *A, *B, *C, *D, *z, *bias, *h0;
  T *out, *last, *ckpt;
};

template <typename T>
struct BackwardBuffers {
  const T *u, *delta, *A, *B, *C, *D, *z, *bias, *ckpt, *dout, *dlast;
  T *du, *ddelta, *dz, *out, *dA_part, *dB_part, *dC_part, *dD_part, *dbias_part, *dh0;
};

void forward(const dfk::ScanParams& p, const ForwardBuffers<float>& buf);
void forward(const dfk::ScanParams& p, const ForwardBuffers<double>& buf);
void backward(const dfk::ScanParams& p, const BackwardBuffers<float>& buf);
void backward(const dfk::ScanParams& p, const BackwardBuffers<double>& buf);

// dst[o, j] = sum_k src[o, k, j] for o < outer, k < count, j < inner (dfk::scan_sum_partials).
void sum_partials(const float* src, float* dst, int outer, int count, long inner);
void sum_partials(const double* src, double* dst, int outer, int count, long inner);

}  // namespace dfnet4::scan_cpu
