"""Causal-conv benchmark: the fused causal_conv1d + SiLU vs. the shifted-slice MLX code it replaced.

At the Mamba block's shape (batch 8, time 500, channels 512, K 4, bias, SiLU, fresh sequence so no
window) measures the median forward and forward+backward wall time and the peak memory
(mx.get_peak_memory) of the op, and of one whole Mamba block (dims 256, expand 2, fused scan) with
either conv, side by side in one run. Prints / writes a markdown table (bench/results/conv.md,
conv.json).

    python bench/conv.py [--batch 8 --time 500 --channels 512 --width 4 --repeats 15]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import dfnet4  # noqa: F401  (before mlx: routes MLX's BLAS to OpenBLAS, docs/blas.md)
import mlx.core as mx
import mlx.nn as nn
import numpy as np

from dfnet4 import ops
from dfnet4.backbones.mamba import MambaBlock
from dfnet4.bench import machine
from op_bench import TableFormat, measure_pair, table


def shifted_slices(x, weight, bias=None, window=None, activation="silu", return_window=False):
    """What MambaBlock did before the fused op (baseline only): K shifted slices, then nn.silu."""
    t, k = x.shape[1], weight.shape[0]
    if window is None:
        window = mx.zeros((x.shape[0], k - 1, x.shape[2]), dtype=x.dtype)
    xp = mx.concatenate([window, x], axis=1)
    y = bias
    for j in range(k):
        y = y + xp[:, j : j + t] * weight[j]
    y = nn.silu(y) if activation == "silu" else y
    return (y, xp[:, xp.shape[1] - (k - 1) :]) if return_window else y


METHODS = {"fused (dfnet4.ops)": ops.causal_conv1d, "shifted slices + nn.silu": shifted_slices}


class SliceConvBlock(MambaBlock):
    """A fused Mamba block whose conv stage is the old shifted-slice code (same backward scheme)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_ops(dataclasses.replace(self._ops, causal_conv1d=shifted_slices))


def measure_op(conv, x, weight, bias, repeats):
    grad = mx.grad(lambda *a: conv(*a).sum(), argnums=(0, 1, 2))
    return measure_pair(lambda: conv(x, weight, bias), lambda: grad(x, weight, bias), repeats)


def measure_block(block, h, repeats):
    loss_and_grad = nn.value_and_grad(block, lambda b: b(h, None)[0].sum())
    return measure_pair(lambda: block(h, None)[0], lambda: loss_and_grad(block), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--time", type=int, default=500)
    parser.add_argument("--channels", type=int, default=512, help="conv channels (the block's d_inner)")
    parser.add_argument("--width", type=int, default=4, help="K, the block's d_conv")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per measurement (median)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if args.channels % 2:
        parser.error("--channels must be even (the block uses expand 2)")

    shape = (args.batch, args.time, args.channels, args.width)
    rng = np.random.default_rng(0)
    bound = 1.0 / np.sqrt(args.width)
    x = mx.array(rng.standard_normal(shape[:3]).astype(np.float32))
    weight = mx.array(rng.uniform(-bound, bound, (args.width, args.channels)).astype(np.float32))
    bias = mx.array(rng.uniform(-bound, bound, (args.channels,)).astype(np.float32))
    mx.eval(x, weight, bias)
    info = machine.describe(measure_blas=False)

    ops_results = {}
    for name, conv in METHODS.items():
        ops_results[name] = measure_op(conv, x, weight, bias, args.repeats)
        print(f"op, {name}: {ops_results[name]}", flush=True)

    dims = args.channels // 2
    h = mx.array(rng.standard_normal((args.batch, args.time, dims)).astype(np.float32))
    block_results = {}
    for name, cls in {"fused conv": MambaBlock, "shifted-slice conv": SliceConvBlock}.items():
        mx.random.seed(1)  # the same parameters for both
        block = cls(dims, d_state=16, d_conv=args.width, expand=2, fused=True)
        mx.eval(block.parameters(), h)
        block_results[name] = measure_block(block, h, args.repeats)
        print(f"block, {name}: {block_results[name]}", flush=True)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    b, t, c, k = shape
    fmt = TableFormat("MiB", ms_digits=2, peak_ratio_digits=2)
    text = "\n\n".join([
        table(f"Causal depthwise conv1d + SiLU, batch {b}, time {t}, channels {c}, K {k} (bias, no window), "
              "float32; gradients for x, weight, bias", ops_results, fmt),
        table(f"One Mamba block (dims {dims}, expand 2 -> d_inner {c}, d_state 16, d_conv {k}, fused scan), "
              f"batch {b}, time {t}; gradients for every parameter", block_results, fmt),
    ])
    text += "\n\n" + "\n".join([
        *machine.summary_lines(info),
        f"- Load average at end: {info['load_average_at_end'][0]:.2f} (1 min)",
        f"- Medians of {args.repeats} runs after one warm-up; peak memory of a forward+backward including "
        "inputs and parameters (MiB = 2^20 bytes).",
    ]) + "\n"
    print(text)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "conv" if shape == (8, 500, 512, 4) else "conv_{}x{}x{}x{}".format(*shape)
    (args.out_dir / f"{stem}.md").write_text(text)
    payload = {"shape": dict(zip(("batch", "time", "channels", "width"), shape)), "machine": info,
               "repeats": args.repeats, "op": ops_results, "block": block_results}
    (args.out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
