"""The loss the model-level measurements differentiate.

The spectral L1 below is the stand-in while no DeepFilterNet loss is importable; `resolve` says
which one was used so that every result file names it.
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx
import mlx.nn as nn

LossFn = Callable[[mx.array, dict, dict], mx.array]


def spectral_l1(enh: mx.array, aux: dict, batch: dict) -> mx.array:
    """Mean absolute difference of the (re, im) spectra."""
    return mx.mean(mx.abs(enh - batch["clean_spec"]))


def resolve(model: nn.Module) -> tuple[str, LossFn]:
    """(name, loss) for `model`: the project's DeepFilterNet loss when available, else spectral L1."""
    return "spectral L1 (mean |enhanced - clean| over re/im)", spectral_l1
