"""This round's fused layers switched on and off in a built DfNet4, for same-run A/B comparisons
(bench/model_ab.py, bench/model_profile.py --pure-mlx). Each fused layer keeps a plain `fused`
attribute (not a parameter); the loss takes its choice per call."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.nn as nn


@dataclass(frozen=True)
class Fused:
    """Which of the model-level fused primitives run (the rest runs in pure MLX)."""

    norm: bool = True  # BatchNorm (+ ReLU): dfnet4.ops.batch_norm
    conv: bool = True  # depthwise (1, K) and transposed convs: dfnet4.ops.depthwise_conv
    loss: bool = True  # spectral loss terms: dfnet4.ops.compressed_spectral_loss


PURE_MLX = Fused(norm=False, conv=False, loss=False)


def apply(model: nn.Module, fused: Fused) -> None:
    """Set the `fused` attribute of every BatchNorm, GroupedConv and DepthwiseTransposedConv."""
    from dfnet4.model.batchnorm import BatchNorm
    from dfnet4.model.layers import DepthwiseTransposedConv, GroupedConv

    for _, module in model.named_modules():
        if isinstance(module, BatchNorm):
            module.fused = fused.norm
        elif isinstance(module, (GroupedConv, DepthwiseTransposedConv)):
            module.fused = fused.conv
