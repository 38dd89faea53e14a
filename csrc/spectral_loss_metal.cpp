// eval_gpu of the compressed-spectral-loss primitives in Metal builds (elsewhere FlaggedPrimitive's
// says there are no GPU kernels): the kernels (metal/spectral_loss.metal) and their launch plan
// (spectral_loss_launch.h) pass the emulated-Metal tests; the host code is still to be written.
#include "spectral_loss.h"

#ifdef _METAL_
#include "metal_pending.h"

namespace dfnet4 {

void CompressedSpectralLoss::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  metal_host_pending(kSlNames.op);
}
void CompressedSpectralLossGrad::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  metal_host_pending(kSlNames.op);
}

}  // namespace dfnet4
#endif
