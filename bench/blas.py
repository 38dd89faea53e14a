"""MLX on Linux with and without dfnet4's BLAS shim, side by side in one run (docs/blas.md).

Each configuration runs in its own subprocess (the BLAS libmlx uses is fixed when mlx.core is
first imported): the reference BLAS bundled with mlx-cpu (DFNET4_BLAS=reference), OpenBLAS through
the shim with dfnet4's default (one OpenBLAS thread, large products split over dfnet4's threads),
the same without the split (DFNET4_BLAS_SPLIT=0), and OpenBLAS with one thread per core.
Configurations are interleaved over --rounds and the best time per cell is kept, so background
load hits all alike.

Measures MLX float32/float64/complex64 matmul GFLOP/s, the forward+backward time of the gru
and attention backbones (batch 8, 500 frames, 256 features) and of the whole DfNet4 model.
Prints a markdown table and writes bench/results/blas.md and bench/results/blas.json.

    PYTHONPATH=python python bench/blas.py [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {
    "reference": {"DFNET4_BLAS": "reference"},
    "openblas": {},  # dfnet4's default: one OpenBLAS thread, large products split over dfnet4's threads
    "openblas-unsplit": {"DFNET4_BLAS_SPLIT": "0"},  # one OpenBLAS thread, nothing split
    f"openblas-{os.cpu_count()}threads": {"OPENBLAS_NUM_THREADS": str(os.cpu_count())},
}
BATCH, FRAMES, FEATURES = 8, 500, 256


# --- measured inside one configuration's process ---------------------------------------------

def best_time(fn, repeats: int) -> float:
    """Seconds of fn()'s fastest run after one warm-up (allocation, OpenBLAS threads, kernel
    selection), timed by dfnet4.bench.timing (imported here: after dfnet4 has chosen the BLAS)."""
    from dfnet4.bench.timing import measure

    return measure(fn, warmup=1, repeats=repeats).min_ms / 1e3


def matmul_gflops(mx, size: int, dtype, repeats: int) -> float:
    a = mx.random.normal((size, size), key=mx.random.key(0)).astype(dtype)
    b = mx.random.normal((size, size), key=mx.random.key(1)).astype(dtype)
    mx.eval(a, b)
    flops = 2.0 * size**3 * (4 if dtype == mx.complex64 else 1)  # a complex multiply-add is 4
    return flops / best_time(lambda: mx.eval(a @ b), repeats) / 1e9


def backbone_variants(mx, nn):
    """(row label, module, what it is) for the gru and attention backbones; dfnet4's own when
    registered and constructible, otherwise mlx.nn stand-ins of the same shape."""
    variants = []
    try:
        from dfnet4 import backbones

        registered = set(backbones.names())
    except Exception:  # the backbones package is a skeleton on this branch
        registered = set()

    def own(name, **options):
        model = backbones.create(name, FEATURES, FEATURES, FEATURES, **options)
        y, _ = model(mx.zeros((1, 2, FEATURES)))  # fails early on a stub
        mx.eval(y)
        return model

    for label, name, options in (("gru (reference)", "gru", {"fused": False}),
                                 ("gru (fused)", "gru", {"fused": True}),
                                 ("attention", "attention", {})):
        if name in registered:
            try:
                variants.append((label, own(name, **options),
                                 f"dfnet4.backbones.create({name!r}, 256, 256, 256, {options})"))
                continue
            except Exception as exc:  # noqa: BLE001  (reported in the table, not hidden)
                why = f"{type(exc).__name__}: {exc}"[:120]
        else:
            why = "not registered"
        if label == "gru (fused)":
            variants.append((label, None, f"unavailable ({why})"))
        elif name == "gru":
            variants.append((label, StandInGRU(nn), f"stand-in mlx.nn.GRU(256, 256) ({why})"))
        else:
            variants.append((label, StandInAttention(nn), "stand-in mlx.nn.TransformerEncoderLayer"
                             f"(256, 4 heads, mlp 512), causal ({why})"))
    return variants


def StandInGRU(nn):  # noqa: N802  (builds a module class lazily: mlx is imported in the child)
    class GRU(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(FEATURES, FEATURES)

        def __call__(self, x):
            return self.gru(x), None

    return GRU()


def StandInAttention(nn):  # noqa: N802
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(FEATURES, 4, 2 * FEATURES, norm_first=True)

        def __call__(self, x):
            mask = nn.MultiHeadAttention.create_additive_causal_mask(x.shape[1]).astype(x.dtype)
            return self.layer(x, mask), None

    return Attention()


def forward_backward_seconds(mx, nn, model, repeats: int) -> float:
    x = mx.random.normal((BATCH, FRAMES, FEATURES), key=mx.random.key(2))

    def loss(x):
        y, _ = model(x)
        return (y * y).mean()

    step = nn.value_and_grad(model, loss)
    return best_time(lambda: mx.eval(step(x)), repeats)


def model_seconds(mx, nn, backbone: str) -> float:
    """Whole DfNet4 forward+backward on a random spectrum (batch 2, 100 frames = 1 s of audio)."""
    from dfnet4.model import DfNet4, DfNet4Config

    model = DfNet4(DfNet4Config(backbone=backbone))
    spec = mx.random.normal((2, 100, 481, 2), key=mx.random.key(3))

    def loss(spec):
        enhanced, _ = model(spec)
        return (enhanced * enhanced).mean()

    step = nn.value_and_grad(model, loss)
    return best_time(lambda: mx.eval(step(spec)), 1)


def child(quick: bool) -> dict:
    import dfnet4  # loads the shim unless DFNET4_BLAS=reference

    import mlx.core as mx
    import mlx.nn as nn

    repeats = 1 if quick else 3
    report = dfnet4.blas_info(measure=False)
    out = {"blas": report, "cells": {}, "what": {}}
    for size in (256, 512) if quick else (256, 512, 1024):
        out["cells"][f"matmul float32 {size}^3 (GFLOP/s)"] = matmul_gflops(mx, size, mx.float32,
                                                                           repeats)
    out["cells"]["matmul float64 512^3 (GFLOP/s)"] = matmul_gflops(mx, 512, mx.float64, repeats)
    out["cells"]["matmul complex64 512^3 (GFLOP/s)"] = matmul_gflops(mx, 512, mx.complex64,
                                                                     repeats)
    for label, model, what in backbone_variants(mx, nn):
        key = f"{label} fwd+bwd (ms)"
        out["what"][key] = what
        if model is not None:
            out["cells"][key] = 1e3 * forward_backward_seconds(mx, nn, model, max(1, repeats - 1))
    for backbone in ("gru", "attention"):
        key = f"DfNet4 ({backbone}) fwd+bwd, batch 2 x 100 frames (ms)"
        try:
            out["cells"][key] = 1e3 * model_seconds(mx, nn, backbone)
            out["what"][key] = f"dfnet4.model.DfNet4(DfNet4Config(backbone={backbone!r}))"
        except ImportError as exc:  # the model lives on another branch until merged
            out["what"][key] = f"unavailable ({exc})"
    return out


# --- the driver ------------------------------------------------------------------------------

def run_config(name: str, quick: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DFNET4_BLAS", "DFNET4_BLAS_SPLIT", "OPENBLAS_NUM_THREADS", "LD_PRELOAD")}
    env.update(CONFIGS[name])
    args = [sys.executable, __file__, "--child"] + (["--quick"] if quick else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"configuration {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def merge_best(runs: list[dict]) -> dict:
    best = dict(runs[0])
    cells = {}
    for run in runs:
        for key, value in run["cells"].items():
            higher_is_better = "GFLOP/s" in key
            if key not in cells:
                cells[key] = value
            else:
                cells[key] = max(cells[key], value) if higher_is_better else min(cells[key], value)
    best["cells"] = cells
    return best


def format_value(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if "GFLOP/s" in key else f"{value:,.0f}"


def ratio(key: str, base: float | None, fast: float | None) -> str:
    if base is None or fast is None:
        return "n/a"
    return f"{fast / base:.2f}x" if "GFLOP/s" in key else f"{base / fast:.2f}x faster"


def table(results: dict) -> str:
    names = list(results)
    rows = list(dict.fromkeys(k for r in results.values() for k in r["what"] | r["cells"]))
    header = ["measurement", *names, "openblas vs reference", "split vs unsplit"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in rows:
        values = [results[n]["cells"].get(key) for n in names]
        cell = {n: results[n]["cells"].get(key) for n in ("reference", "openblas", "openblas-unsplit")}
        lines.append("| " + " | ".join([key, *(format_value(key, v) for v in values),
                                        ratio(key, cell["reference"], cell["openblas"]),
                                        ratio(key, cell["openblas-unsplit"], cell["openblas"])]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds over the configurations; best per cell is kept")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats (smoke run)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.quick)))
        return
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    if sys.platform != "linux":
        raise SystemExit("bench/blas.py compares BLAS libraries for MLX on Linux only")

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for round_index in range(args.rounds):
        order = list(CONFIGS) if round_index % 2 == 0 else list(reversed(CONFIGS))
        for name in order:
            runs[name].append(run_config(name, args.quick))
    results = {name: merge_best(r) for name, r in runs.items()}
    load_after = os.getloadavg()

    whats = {}
    for r in results.values():
        whats.update(r["what"])
    lines = [
        "# MLX matmuls and backbones with and without dfnet4's BLAS shim",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"({args.rounds} interleaved rounds, best per cell{', quick' if args.quick else ''}).",
        f"Backbones: batch {BATCH}, {FRAMES} frames, {FEATURES} features, float32, "
        "mean(y^2) loss, value_and_grad over all parameters.",
        "",
        table(results),
        "",
        "What each configuration's MLX used (dfnet4.blas_info(), measured in that process):",
        "",
        *(f"- {name}: {r['blas']['summary']}" for name, r in results.items()),
        "",
        "Backbone implementations:",
        "",
        *(f"- {key}: {what}" for key, what in whats.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "blas.md").write_text(text)
    record = {"load_average": [load_before, load_after], "rounds": args.rounds,
              "quick": args.quick, "batch": BATCH, "frames": FRAMES, "features": FEATURES,
              "results": results, "runs": runs}
    (RESULTS / "blas.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
