// CPU drivers of the RMSNorm kernel bodies: loop the bodies of kernels/rms_norm.h over blocks of
// rows on our own threads (the backward's fold of the dweight partials is small and runs on the
// calling thread).
#pragma once

#include "kernels/rms_norm_params.h"

namespace dfnet4::rms_cpu {

// Raw, contiguous buffers. part: (n_blocks, C) scratch.
template <typename T>
struct ForwardBuffers {
  const T *x, *weight;
  T* y;
};

template <typename T>
struct BackwardBuffers {
  const T *x, *weight, *dy;
  T *dx, *dweight, *part;
};

void forward(const dfk::RmsParams& p, double eps, const ForwardBuffers<float>& buf);
void forward(const dfk::RmsParams& p, double eps, const ForwardBuffers<double>& buf);
void backward(const dfk::RmsParams& p, double eps, const BackwardBuffers<float>& buf);
void backward(const dfk::RmsParams& p, double eps, const BackwardBuffers<double>& buf);

}  // namespace dfnet4::rms_cpu
