// CPU drivers of the compressed-spectral-loss kernel bodies: loop the bodies of
// kernels/spectral_loss.h over their chunks on our own threads, then fold the partials.
#pragma once

#include "kernels/spectral_loss_params.h"

namespace dfnet4::sl_cpu {

// Raw, contiguous buffers of (re, im) pairs; part: (n_chunks, 2) scratch; out: (mag, cplx).
template <typename T>
struct ForwardBuffers {
  const T *pred, *target;
  T *part, *mag, *cplx;
};

// dpred / dtarget are null unless flagged.
template <typename T>
struct BackwardBuffers {
  const T *pred, *target, *dmag, *dcplx;
  T *dpred, *dtarget;
};

void forward(const dfk::SlParams& p, double gamma, const ForwardBuffers<float>& buf);
void forward(const dfk::SlParams& p, double gamma, const ForwardBuffers<double>& buf);
void backward(const dfk::SlParams& p, double gamma, const BackwardBuffers<float>& buf);
void backward(const dfk::SlParams& p, double gamma, const BackwardBuffers<double>& buf);

}  // namespace dfnet4::sl_cpu
