"""Pure-MLX reference implementations: short, obviously-correct oracles for the fused ops."""

from dfnet4.reference.batch_norm import batch_norm
from dfnet4.reference.causal_conv import causal_conv1d
from dfnet4.reference.depthwise_conv import depthwise_conv
from dfnet4.reference.gru import gru
from dfnet4.reference.rms_norm import rms_norm
from dfnet4.reference.selective_scan import selective_scan
from dfnet4.reference.spectral_loss import compressed_spectral_loss

__all__ = ["batch_norm", "causal_conv1d", "compressed_spectral_loss", "depthwise_conv", "gru", "rms_norm",
           "selective_scan"]
