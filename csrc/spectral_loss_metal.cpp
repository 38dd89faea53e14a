// eval_gpu of the compressed-spectral-loss primitives. The Metal kernels (metal/spectral_loss.metal)
// and their launch plan (spectral_loss_launch.h) are written and run on the emulator; the host code
// that dispatches them waits for the shared Metal host helper, so every build raises a clear error
// on the GPU for now.
#include "spectral_loss.h"

#include <stdexcept>

namespace dfnet4 {

namespace {
[[noreturn]] void no_gpu() {
  throw std::runtime_error(
      "dfnet4.ops.compressed_spectral_loss: no GPU evaluation in this build yet (the Metal host code is "
      "pending); run it on the CPU stream, e.g. with mx.stream(mx.cpu)");
}
}  // namespace

void CompressedSpectralLoss::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) { no_gpu(); }
void CompressedSpectralLossGrad::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) { no_gpu(); }

}  // namespace dfnet4
