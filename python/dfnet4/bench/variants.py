"""This round's fused layers switched on and off in a built DfNet4, for same-run A/B comparisons
(bench/model_ab.py, bench/model_profile.py --pure-mlx). Each fused layer keeps a plain `fused`
attribute (not a parameter); the loss takes its choice per call."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import mlx.core as mx
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


def free_scan(u, delta, A, B, C, D=None, z=None, h0=None, return_last_state=False, **_):
    """A stand-in for the selective scan that costs (almost) nothing: out = u * z, one multiply,
    gradients to u and z only (u * silu(z) is not cheap here: MLX's CPU elementwise ops run on one
    thread, and its forward and backward took longer than the fused scan's). Not a model anyone
    should train: a lower bound on what any scan kernel could make of the Mamba model's step
    (bench/mamba_bound.py, bench/mamba_ab.py)."""
    out = u * z
    last = mx.zeros((u.shape[0], u.shape[2], A.shape[1]), u.dtype) if h0 is None else h0
    return (out, last) if return_last_state else out


def without_scan(model: nn.Module) -> nn.Module:
    """`model` with every Mamba block's scan swapped for free_scan; the blocks keep their backward
    scheme (recomputing or autodiff). Without the checkpointed scan pair in the swapped ops, the
    keep-in-proj backward differentiates free_scan instead of running the real scan's backward."""
    from dfnet4.backbones.mamba import MambaBlock
    from dfnet4.backbones.mamba_block import BlockOps

    for _, module in model.named_modules():
        if isinstance(module, MambaBlock):
            module.use_ops(BlockOps(module._ops.causal_conv1d, free_scan, module._ops.rms_norm))
    return model


def use_blas_split(on: bool) -> None:
    """Switch the Linux BLAS shim's split of large matmuls over dfnet4's threads (read at each
    product; docs/blas.md); no effect where the shim is not in use."""
    os.environ["DFNET4_BLAS_SPLIT"] = "1" if on else "0"


# MLX's own FFTs and complex conversions, whose VJPs multiply complex64 values (the state before
# dfnet4.dsp.real_fft); the names are those the STFT and loss modules import from real_fft.
_MLX_FFT = {
    "rfft": lambda signal: mx.fft.rfft(signal, axis=-1),
    "irfft": lambda spectrum, n: mx.fft.irfft(spectrum, n=n, axis=-1),
    "as_complex": lambda pairs: pairs[..., 0] + 1j * pairs[..., 1],
    "as_pairs": lambda spectrum: mx.stack([mx.real(spectrum), mx.imag(spectrum)], axis=-1),
}


def use_float_view_ffts(on: bool) -> None:
    """Run the STFT, iSTFT and loss STFTs on dfnet4.dsp.real_fft (float-view VJPs, the default) or,
    with on=False, on MLX's own ops. Swaps the functions in the modules that call them (looked up at
    each call, so it applies to built models and to eager steps, not to already compiled ones)."""
    from dfnet4.dsp import real_fft, stft
    from dfnet4.train import losses

    for module in (stft, losses):
        for name, mlx_version in _MLX_FFT.items():
            if hasattr(module, name):
                setattr(module, name, getattr(real_fft, name) if on else mlx_version)


def interleaved(runs: dict[str, dict[str, Callable]], repeats: int,
                prepare: Callable[[str], None] | None = None) -> dict:
    """Time every variant's steps once per round, every variant in each round, so that a change in the
    machine's load hits all alike; the first round warms up. runs: {variant: {measure: step}};
    prepare(variant), when given, switches a shared model to it. -> {variant: {measure: {"wall": [ms], "cpu": [ms]}}}
    (cpu: the process's CPU time, all threads)."""
    samples = {v: {m: {"wall": [], "cpu": []} for m in steps} for v, steps in runs.items()}
    for rep in range(repeats + 1):
        for name, steps in runs.items():
            if prepare:
                prepare(name)
            for m, step in steps.items():
                mx.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
                mx.eval(step())
                mx.synchronize()
                if rep:
                    samples[name][m]["wall"].append((time.perf_counter() - t0) * 1e3)
                    samples[name][m]["cpu"].append((time.process_time() - c0) * 1e3)
        print(f"round {rep}/{repeats} done", file=sys.stderr, flush=True)
    return samples


def model_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """The command line the model-level scripts (bench/model_ab.py, bench/model_profile.py) share."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--impl", default="gru/fused", help="implementation name as in dfnet4-bench --only")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--out", default="bench/results")
    return p


def build_model(args, parser) -> tuple:
    """(model, batch) for the parsed model_parser arguments: the implementation's DfNet4 (seeded as
    dfnet4-bench seeds it), one evaluated batch of the training loss's inputs; MLX's buffer cache
    at its training setting."""
    import mlx.core as mx

    from dfnet4.bench import objective
    from dfnet4.bench.runner import Settings, make_model
    from dfnet4.bench.suite import DEFAULT_IMPLS
    from dfnet4.memory import configure_buffer_cache

    impls = {i.name: i for i in DEFAULT_IMPLS}
    if args.impl not in impls:
        parser.error(f"--impl: unknown {args.impl!r}; choose from {sorted(impls)}")
    configure_buffer_cache(None)
    settings = Settings(batch=args.batch, frames=args.frames)
    mx.random.seed(settings.seed)
    model = make_model(impls[args.impl], settings)
    batch = objective.resolve(model).make_batch(args.batch, args.frames)
    mx.eval(model.parameters(), batch)
    return model, batch
