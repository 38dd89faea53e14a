// CPU drivers of the batch-norm kernel bodies: loop the bodies of kernels/batch_norm.h over their
// grids on our own threads (the partials' fold per channel is small and runs on the calling thread).
#pragma once

#include "kernels/batch_norm_params.h"

namespace dfnet4::bn_cpu {

// Raw, contiguous buffers. Partials: (n_blocks, C) scratch each.
template <typename T>
struct ForwardBuffers {
  const T *x, *weight, *bias;
  T *y, *mean, *var;
  T *part_mean, *part_m2;
};

template <typename T>
struct BackwardBuffers {
  const T *x, *weight, *bias, *mean, *var, *dy, *dmean, *dvar;
  T *dx, *dweight, *dbias;
  T *part_g, *part_gx;
};

void forward(const dfk::BnParams& p, double eps, const ForwardBuffers<float>& buf);
void forward(const dfk::BnParams& p, double eps, const ForwardBuffers<double>& buf);
void backward(const dfk::BnParams& p, double eps, const BackwardBuffers<float>& buf);
void backward(const dfk::BnParams& p, double eps, const BackwardBuffers<double>& buf);

}  // namespace dfnet4::bn_cpu
