// CPU drivers of the causal-conv kernel bodies: loop the per-item bodies of kernels/causal_conv_{fwd,bwd}.h
// over the (batch, chunk, channel block) grid on our own threads.
#pragma once

#include "kernels/causal_conv_params.h"

namespace dfnet4::conv_cpu {

// Raw, contiguous buffers; window and bias are null when their flag is off.
template <typename T>
struct ForwardBuffers {
  const T *x, *window, *weight, *bias;
  T *y, *new_window;
};

template <typename T>
struct BackwardBuffers {
  const T *x, *window, *weight, *bias, *dy, *dnew_window;
  T *dx, *dwindow, *dweight, *dbias;
  T *dw_part, *db_part;  // (batch * n_chunks, K, C) and (batch * n_chunks, C) scratch
};

void forward(const dfk::ConvParams& p, const ForwardBuffers<float>& buf);
void forward(const dfk::ConvParams& p, const ForwardBuffers<double>& buf);
// The backward kernel, then the fold of the partials into dweight and dbias.
void backward(const dfk::ConvParams& p, const BackwardBuffers<float>& buf);
void backward(const dfk::ConvParams& p, const BackwardBuffers<double>& buf);

}  // namespace dfnet4::conv_cpu
