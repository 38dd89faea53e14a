// Parameters and flags of the selective-scan kernels (docs/selective-scan.md): what the primitive,
// the launch plan and the kernel bodies share. Plain ints and no includes, so host code (and the
// emulated harness, before the emulator's <metal_stdlib>) can include it on its own.
#pragma once

namespace dfk {

enum ScanConstants {
  kScanChunk = 16,  // checkpoint interval (time steps); also the recompute scratch depth
  kScanBlock = 32,  // channels per reduction block (one SIMD-group on Apple GPUs)
  kScanMaxState = 64,
};

enum ScanFlags {
  kScanHasD = 1,
  kScanHasZ = 2,
  kScanHasBias = 4,
  kScanSoftplus = 8,
  kScanHasH0 = 16,
  // backward only: also write `out`, the forward's output, re-formed from the states the backward
  // recomputes anyway (mamba-ssm's recompute_out_z), so a caller holding the checkpoints needs no
  // second forward
  kScanBwdOut = 32,
};

// Passed by value to the bodies and as one constant buffer to the Metal kernels (ints only, so the
// layout is the same on both sides).
struct ScanParams {
  int batch;
  int length;
  int channels;
  int state;
  int n_chunks;  // ceil(length / kScanChunk)
  int n_blocks;  // ceil(channels / kScanBlock)
  int flags;
};

inline ScanParams make_scan_params(int batch, int length, int channels, int state, int flags) {
  const ScanParams p = {batch, length, channels, state, (length + kScanChunk - 1) / kScanChunk,
                        (channels + kScanBlock - 1) / kScanBlock, flags};
  return p;
}

}  // namespace dfk
