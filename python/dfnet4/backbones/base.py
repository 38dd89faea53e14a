"""The one interface every temporal backbone implements (the registry that names them: registry.py).

A backbone maps (batch, time, input_size) -> (batch, time, output_size) and carries a `state`
(a pytree of mx.arrays, or None) that holds everything needed to continue the sequence, so that
processing a signal in pieces with the returned state equals processing it whole.

All three backbones share DeepFilterNet's "squeezed" shape: grouped linear in (+ activation),
a temporal core at `hidden_size`, grouped linear out (+ activation), and an optional identity skip.
Only the core differs, so each backbone module implements a core and `Squeezed` wraps it.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import mlx.nn as nn

State = Any  # a pytree of mx.array (dict / list / tuple) or None

class GroupedLinear(nn.Module):
    """DeepFilterNet's GroupedLinearEinsum: `groups` independent linear maps over feature slices.

    weight: (groups, input_size // groups, output_size // groups); no bias.
    """

    def __init__(self, input_size: int, output_size: int, groups: int = 1):
        super().__init__()
        if input_size % groups or output_size % groups:
            raise ValueError(
                f"GroupedLinear: input_size={input_size} and output_size={output_size} "
                f"must both be divisible by groups={groups}"
            )
        self.groups = groups
        self.input_size = input_size
        self.output_size = output_size
        ws = input_size // groups
        scale = 1.0 / (ws**0.5)
        self.weight = mx.random.uniform(-scale, scale, (groups, ws, output_size // groups))

    def __call__(self, x: mx.array) -> mx.array:
        lead = x.shape[:-1]
        rows = math.prod(lead)
        # (g, rows, i) @ (g, i, h): one GEMM per group. Broadcasting (..., g, 1, i) @ (g, i, h)
        # instead runs rows*g tiny products and its weight gradient materialises (..., g, i, h):
        # 2.5-4x slower and 3x the memory (measured at (8, 500, 256) and (8, 500, 3072)).
        # Contiguous: the matmul's VJP forms the weight gradient from this primal, and from the
        # transposed view MLX takes a slow path (3072 -> 512 in 32 groups at (8, 500): forward +
        # backward 211 -> 69 ms; 512 -> 256 in 16: 26 -> 11 ms; the results are the same bits).
        xg = mx.contiguous(x.reshape(rows, self.groups, self.input_size // self.groups).transpose(1, 0, 2))
        y = (xg @ self.weight).transpose(1, 0, 2)
        return y.reshape(*lead, self.output_size)


class Squeezed(nn.Module):
    """linear_in -> core -> linear_out (+ identity skip), the shape shared by all backbones.

    `core` is a module with `__call__(x: (B, T, hidden), state) -> (y: (B, T, hidden), state)`.
    With `output_size=None` there is no linear_out (the core's hidden output is returned), as in
    DeepFilterNet3's SqueezedGRU_S.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None,
        core: nn.Module,
        *,
        linear_groups: int = 8,
        skip: bool = False,
        activation: bool = True,
    ):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size if output_size is None else output_size
        self.activation = activation
        self.linear_in = GroupedLinear(input_size, hidden_size, linear_groups)
        self.core = core
        self.linear_out = None if output_size is None else GroupedLinear(hidden_size, output_size, linear_groups)
        if skip and input_size != self.output_size:
            raise ValueError(
                f"skip=True needs input_size == output_size, got {input_size} and {self.output_size}"
            )
        self.skip = skip

    def _act(self, x: mx.array) -> mx.array:
        return nn.relu(x) if self.activation else x

    def __call__(self, x: mx.array, state: State = None) -> tuple[mx.array, State]:
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: x must have shape (batch, time, {self.input_size}), got {tuple(x.shape)}"
            )
        h = self._act(self.linear_in(x))
        h, state = self.core(h, state)
        if self.linear_out is not None:
            h = self._act(self.linear_out(h))
        if self.skip:
            h = h + x
        return h, state
