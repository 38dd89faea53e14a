"""Public fused ops backed by the compiled extension."""

from dfnet4.ops.batch_norm import batch_norm
from dfnet4.ops.causal_conv import causal_conv1d
from dfnet4.ops.depthwise_conv import depthwise_conv
from dfnet4.ops.gru import gru
from dfnet4.ops.rms_norm import rms_norm
from dfnet4.ops.selective_scan import selective_scan, selective_scan_backward, selective_scan_checkpointed
from dfnet4.ops.spectral_loss import compressed_spectral_loss

__all__ = ["batch_norm", "causal_conv1d", "compressed_spectral_loss", "depthwise_conv", "gru", "rms_norm",
           "selective_scan", "selective_scan_backward", "selective_scan_checkpointed"]
