"""The mamba backbone: pre-norm residual Mamba blocks inside DeepFilterNet's squeezed shape.

One block (Gu & Dao 2023): RMSNorm -> in_proj to (x, z) -> causal depthwise conv on x, silu (one
causal_conv1d op) -> x_proj to (dt, B, C) -> dt_proj -> selective scan (softplus(dt + dt_bias),
A = -exp(A_log), D skip, output gated by silu(z), all inside the scan op) -> out_proj -> + residual.
The block's math is written once, in mamba_block.py: fused blocks run it on dfnet4.ops under a
hand-written backward that recomputes the block instead of storing its activations; the others run
it on the pure-MLX dfnet4.reference ops under MLX's autodiff (the oracle).

State (per layer): `conv`, the last d_conv - 1 conv inputs (batch, d_conv - 1, d_inner), and `ssm`,
the scan state (batch, d_inner, d_state). With them a sequence fed in pieces gives the same output
as fed whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from dfnet4 import _extension
from dfnet4.backbones.base import Squeezed, State
from dfnet4.backbones.mamba_block import BlockOps, BlockSizes, block_forward, recomputing_block
from dfnet4.backbones.registry import BackboneOptions, register
from dfnet4.ops.causal_conv import max_width as conv_max_width
from dfnet4.schema import param, require


@dataclass
class MambaOptions(BackboneOptions):
    """The mamba backbone's `[model.mamba]` table."""

    fused_flag = "fused_scan"
    d_state: int = param(16, ge=1)
    d_conv: int = param(4, ge=1)
    expand: int = param(2, ge=1)
    # fused only: the backward recomputes each block instead of keeping its activations
    # (7 of autodiff's 16 input-sized arrays per block with keep_in_proj; see mamba_block.py)
    recompute: bool = True
    # with recompute: the forward also keeps in_proj's output and the scan's checkpoints (as
    # mamba-ssm does) and the backward recomputes from there, running no second scan forward:
    # faster step, ~6 more input-sized arrays per block (false: the block input only; mamba_block.py)
    keep_in_proj: bool = True
    fused: bool | None = None  # the fused scan and conv (dfnet4.ops); None: when the extension is built

    def check(self, model, key: str) -> None:
        if self.fused is not False and (self.fused or _extension.available()):
            require(self.d_conv <= conv_max_width(), f"{key}.d_conv", self.d_conv,
                    f"<= {conv_max_width()} with the fused kernels (or {key}.fused = false)")


def _ops(fused: bool) -> BlockOps:
    if fused:
        from dfnet4 import ops

        return BlockOps(ops.causal_conv1d, ops.selective_scan, ops.rms_norm, ops.selective_scan_checkpointed,
                        ops.selective_scan_backward)
    from dfnet4 import reference

    # MLX's own RMSNorm (on the CPU a chain of single-threaded ops, the fused one's oracle)
    return BlockOps(reference.causal_conv1d, reference.selective_scan, mx.fast.rms_norm)


def _inverse_softplus(y: mx.array) -> mx.array:
    # softplus(x) = y  <=>  x = y + log(1 - exp(-y)); expm1 keeps it accurate for small y
    return y + mx.log(-mx.expm1(-y))


class MambaBlock(nn.Module):
    def __init__(self, dims: int, d_state: int, d_conv: int, expand: int, fused: bool, recompute: bool = True,
                 keep_in_proj: bool = True):
        super().__init__()
        d_inner = expand * dims
        self.d_inner, self.d_state, self.d_conv = d_inner, d_state, d_conv
        self.dt_rank = math.ceil(dims / 16)
        self.fused = fused
        self.norm = nn.RMSNorm(dims)
        self.in_proj = nn.Linear(dims, 2 * d_inner, bias=False)
        # depthwise causal conv: one width-d_conv filter per channel, channels-last
        bound = 1.0 / math.sqrt(d_conv)
        self.conv_weight = mx.random.uniform(-bound, bound, (d_conv, d_inner))
        self.conv_bias = mx.random.uniform(-bound, bound, (d_inner,))
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=False)  # its bias is dt_bias, applied by the scan
        std = self.dt_rank**-0.5
        self.dt_proj.weight = mx.random.uniform(-std, std, (d_inner, self.dt_rank))
        # Mamba's dt init: softplus(dt_bias) log-uniform in [1e-3, 1e-1], so the initial step sizes
        # span both fast and slow time scales
        lo, hi = math.log(1e-3), math.log(1e-1)
        dt = mx.maximum(mx.exp(mx.random.uniform(lo, hi, (d_inner,))), 1e-4)
        self.dt_bias = _inverse_softplus(dt)
        # S4D-real init: A[c, n] = -(n + 1)
        self.A_log = mx.log(mx.broadcast_to(mx.arange(1, d_state + 1, dtype=mx.float32), (d_inner, d_state)))
        self.D = mx.ones((d_inner,))
        self.out_proj = nn.Linear(d_inner, dims, bias=False)
        self._sizes = BlockSizes(d_inner, self.dt_rank, d_state, self.norm.eps)
        # fused + recompute: the block under its hand-written, recomputing backward (mamba_block.py);
        # otherwise MLX's autodiff of the same math
        self._ops = _ops(fused)
        self.set_backward(recompute, keep_in_proj)

    def set_backward(self, recompute: bool, keep_in_proj: bool = True) -> None:
        """The backward scheme: recompute (fused only) from in_proj's output and the scan's
        checkpoints when keep_in_proj, else from the block input; otherwise MLX's autodiff.
        Benchmarks switch it on a built model."""
        self._recompute, self._keep_in_proj = self.fused and recompute, keep_in_proj
        self.use_ops(self._ops)

    def use_ops(self, ops: BlockOps) -> None:
        """Run the block on `ops` (benchmarks swap in stand-ins), keeping its backward scheme."""
        self._ops = ops
        self._block = recomputing_block(ops, self._sizes, self._keep_in_proj) if self._recompute else None

    def _params(self) -> dict:
        return {
            "norm": self.norm.weight, "in_proj": self.in_proj.weight, "conv_weight": self.conv_weight,
            "conv_bias": self.conv_bias, "x_proj": self.x_proj.weight, "dt_proj": self.dt_proj.weight,
            "dt_bias": self.dt_bias, "A_log": self.A_log, "D": self.D, "out_proj": self.out_proj.weight,
        }

    def __call__(self, h: mx.array, state: dict | None) -> tuple[mx.array, dict]:
        # state None: a fresh sequence (zero conv window and scan state)
        window, ssm = (None, None) if state is None else (state["conv"], state["ssm"])
        if self._block is not None:
            if state is None:  # the custom function takes arrays only
                window = mx.zeros((h.shape[0], self.d_conv - 1, self.d_inner), h.dtype)
                ssm = mx.zeros((h.shape[0], self.d_inner, self.d_state), h.dtype)
            out, window, ssm = self._block(self._params(), h, window, ssm)
        else:
            out, window, ssm = block_forward(self._ops, self._params(), h, window, ssm, self._sizes)
        return out, {"conv": window, "ssm": ssm}


class MambaCore(nn.Module):
    """`num_layers` pre-norm residual Mamba blocks and a final RMSNorm, at width `dims`."""

    def __init__(
        self, dims: int, num_layers: int, d_state: int, d_conv: int, expand: int, fused: bool, recompute: bool = True,
        keep_in_proj: bool = True,
    ):
        super().__init__()
        self.layers = [MambaBlock(dims, d_state, d_conv, expand, fused, recompute, keep_in_proj)
                       for _ in range(num_layers)]
        self.norm_out = nn.RMSNorm(dims)
        self._rms_norm = _ops(fused).rms_norm  # the blocks' norm: fused when they are

    def _check_state(self, state: State, batch: int) -> None:
        if not isinstance(state, (list, tuple)) or len(state) != len(self.layers):
            raise ValueError(
                f"SqueezedMamba: state must be None or a list of {len(self.layers)} per-layer dicts "
                f"{{'conv', 'ssm'}} as returned by this backbone, got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, (list, tuple)) else "")
            )
        for i, (layer, s) in enumerate(zip(self.layers, state)):
            want = {
                "conv": (batch, layer.d_conv - 1, layer.d_inner),
                "ssm": (batch, layer.d_inner, layer.d_state),
            }
            if not isinstance(s, dict) or set(s) != set(want):
                raise ValueError(f"SqueezedMamba: state[{i}] must be a dict with keys 'conv' and 'ssm', got {s!r:.80}")
            for name, shape in want.items():
                if tuple(s[name].shape) != shape:
                    raise ValueError(
                        f"SqueezedMamba: state[{i}][{name!r}] must have shape {shape}, got {tuple(s[name].shape)}"
                    )

    def __call__(self, x: mx.array, state: State = None) -> tuple[mx.array, State]:
        if x.shape[1] < 1:  # the scan has no step to run; refuse here rather than inside it
            raise ValueError(f"SqueezedMamba: x must have at least one frame (time >= 1), got shape {tuple(x.shape)}")
        if state is None:
            state = [None] * len(self.layers)
        else:
            self._check_state(state, x.shape[0])
        new_state = []
        for layer, s in zip(self.layers, state):
            x, s = layer(x, s)
            new_state.append(s)
        return self._rms_norm(x, self.norm_out.weight, self.norm_out.eps), new_state


@register("mamba", MambaOptions)
class SqueezedMamba(Squeezed):
    """Grouped linear in -> Mamba blocks -> grouped linear out (+ skip).

    fused=None uses dfnet4.ops (selective_scan, causal_conv1d) when the extension is importable,
    else dfnet4.reference; fused=True without the extension raises RuntimeError. The fused conv
    takes d_conv <= 8. recompute (fused only; default True): the backward recomputes each block
    instead of keeping its activations (bench/results/backbones.md has both side by side).
    keep_in_proj (with recompute; default True): the forward keeps in_proj's output and the scan's
    checkpoints and the backward recomputes from there (7 input-sized arrays per block, no second
    scan forward); False: it keeps the block input only (1 array per block, one more block forward).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        *,
        num_layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        fused: bool | None = None,
        recompute: bool = True,
        keep_in_proj: bool = True,
        linear_groups: int = 8,
        skip: bool = False,
        activation: bool = True,
    ):
        for name, value in (("num_layers", num_layers), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SqueezedMamba: {name} must be an int >= 1, got {value!r}")
        for name, value in (("recompute", recompute), ("keep_in_proj", keep_in_proj)):
            if not isinstance(value, bool):
                raise ValueError(f"SqueezedMamba: {name} must be a bool, got {value!r}")
        self_fused = _extension.resolve(fused, "SqueezedMamba")
        if self_fused and d_conv > conv_max_width():
            raise ValueError(
                f"SqueezedMamba: d_conv must be <= {conv_max_width()} with the fused kernels "
                f"(dfnet4.ops.causal_conv1d), got {d_conv}; pass fused=False for a wider conv"
            )
        core = MambaCore(hidden_size, num_layers, d_state, d_conv, expand, self_fused, recompute, keep_in_proj)
        super().__init__(
            input_size, hidden_size, output_size, core, linear_groups=linear_groups, skip=skip, activation=activation
        )
        self.fused = self_fused
        self.num_layers = num_layers
        self.d_state, self.d_conv, self.expand = d_state, d_conv, expand
        self.recompute, self.keep_in_proj = recompute, keep_in_proj
