"""The gru backbone: DeepFilterNet's SqueezedGRU_S (grouped linear in, multi-layer GRU, grouped linear out).

The core keeps one mlx.nn.GRU-compatible parameter set per layer (Wx (3H, H), Wh (3H, H), b (3H,),
bhn (H,); gate order r, z, n). Its fused path runs each layer with dfnet4.ops.gru (the compiled
recurrence); its reference path with mlx.nn.GRU's own loop. State: the last hidden state per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from dfnet4 import _extension
from dfnet4.backbones.base import Squeezed, State
from dfnet4.backbones.registry import BackboneOptions, register


@dataclass
class GruOptions(BackboneOptions):
    """The gru backbone's `[model.gru]` table."""

    fused_flag = "fused_gru"
    fused: bool | None = None  # the fused GRU recurrence (dfnet4.ops.gru); None: when the extension is built


class GRUCore(nn.Module):
    """Stacked GRU layers at width `hidden_size`: (B, T, H) -> (B, T, H), state = [h_last per layer]."""

    def __init__(self, hidden_size: int, num_layers: int = 1, fused: bool | None = None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"gru backbone: num_layers must be >= 1, got {num_layers}")
        self.hidden_size = hidden_size
        self.fused = _extension.resolve(fused, "gru backbone")
        self.layers = [nn.GRU(hidden_size, hidden_size) for _ in range(num_layers)]

    def __call__(self, x: mx.array, state: State = None) -> tuple[mx.array, State]:
        if state is not None and (len(state) != len(self.layers) or any(
            h.shape != (x.shape[0], self.hidden_size) for h in state
        )):
            raise ValueError(
                f"gru backbone: state must be {len(self.layers)} arrays of shape "
                f"({x.shape[0]}, {self.hidden_size}), got {[tuple(h.shape) for h in state]}"
            )
        new_state = []
        for i, layer in enumerate(self.layers):
            h0 = None if state is None else state[i]
            if self.fused:
                from dfnet4.ops import gru as fused_gru

                x = fused_gru(x, layer.Wx, layer.Wh, layer.b, layer.bhn, h0)
            else:
                x = layer(x, h0)
            new_state.append(x[:, -1])
        return x, new_state


@register("gru", GruOptions)
class SqueezedGRU_S(Squeezed):
    """DeepFilterNet3's SqueezedGRU_S with the GRU as the core."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        *,
        num_layers: int = 1,
        linear_groups: int = 8,
        skip: bool = False,
        activation: bool = True,
        fused: bool | None = None,
    ):
        core = GRUCore(hidden_size, num_layers, fused)
        super().__init__(
            input_size, hidden_size, output_size, core, linear_groups=linear_groups, skip=skip, activation=activation
        )
