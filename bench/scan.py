"""Selective-scan benchmark: fused op vs. the pure-MLX reference loop vs. the Hillis-Steele scan.

At the model's shape (batch 8, time 500, channels 512, state 16, with D, z, delta_bias and softplus
as Mamba uses them) measures the median forward and forward+backward wall time and the peak memory
(mx.get_peak_memory) of each, side by side in one run, and prints / writes a markdown table with
the ratios (bench/results/scan.md, scan.json).

    python bench/scan.py [--batch 8 --time 500 --channels 512 --state 16 --repeats 7]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import dfnet4  # noqa: F401  (before mlx: routes MLX's BLAS to OpenBLAS, docs/blas.md)
import mlx.core as mx
import numpy as np

from dfnet4 import ops, reference
from dfnet4.bench import machine
from op_bench import TableFormat, measure_pair, table


def hillis_steele_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       h0=None, return_last_state=False):
    """The upstream MLX port's parallel scan (baseline only, not product code).

    Materialises exp(dt*A) and dt*B*u as (batch, time, channels, state) arrays, pads time to a power
    of two and runs log2(time) Hillis-Steele steps of (a, b) <- (a2*a1, a2*b1 + b2).
    """
    batch, length, channels = u.shape
    dt = delta if delta_bias is None else delta + delta_bias
    if delta_softplus:
        dt = mx.logaddexp(dt, 0.0)
    a = mx.exp(dt[..., None] * A)  # (b, L, d, n)
    b = (dt * u)[..., None] * B[:, :, None, :]  # (b, L, d, n)
    padded = 1 << max(0, math.ceil(math.log2(length)))
    if padded > length:
        pad = [(0, 0), (0, padded - length), (0, 0), (0, 0)]
        a = mx.pad(a, pad, constant_values=1.0)
        b = mx.pad(b, pad, constant_values=0.0)
    offset = 1
    while offset < padded:
        a_prev = mx.concatenate([mx.ones_like(a[:, :offset]), a[:, :-offset]], axis=1)
        b_prev = mx.concatenate([mx.zeros_like(b[:, :offset]), b[:, :-offset]], axis=1)
        b = a * b_prev + b
        a = a * a_prev
        offset *= 2
    h = b[:, :length]
    if h0 is not None:
        h = h + a[:, :length] * h0[:, None]
    y = (h * C[:, :, None, :]).sum(-1)
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * (z * mx.sigmoid(z))
    if return_last_state:
        return y, h[:, -1]
    return y


METHODS = {
    "fused (dfnet4.ops)": ops.selective_scan,
    "reference loop": reference.selective_scan,
    "Hillis-Steele (pure MLX)": hillis_steele_scan,
}


def make_inputs(batch, length, channels, state, seed=0):
    rng = np.random.default_rng(seed)
    normal = lambda *s: mx.array(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    kwargs = dict(
        u=normal(batch, length, channels),
        delta=normal(batch, length, channels),
        A=-mx.exp(0.5 * normal(channels, state)),
        B=normal(batch, length, state),
        C=normal(batch, length, state),
        D=normal(channels),
        z=normal(batch, length, channels),
        delta_bias=0.3 * normal(channels),
    )
    mx.eval(kwargs)
    return kwargs


def measure_scan(fn, kwargs, repeats):
    names = list(kwargs)
    values = list(kwargs.values())
    grad = mx.grad(
        lambda *a: fn(**dict(zip(names, a)), delta_softplus=True).sum(),
        argnums=tuple(range(len(names))),
    )
    return measure_pair(lambda: fn(**kwargs, delta_softplus=True), lambda: grad(*values), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--time", type=int, default=500)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of the fused op (median)")
    parser.add_argument("--baseline-repeats", type=int, default=3, help="timed runs of the pure-MLX scans")
    parser.add_argument("--skip-hillis-steele", action="store_true", help="it needs ~6 GB at the default shape")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()

    shape = (args.batch, args.time, args.channels, args.state)
    kwargs = make_inputs(*shape)
    info = machine.describe(measure_blas=False)
    results = {}
    for name, fn in METHODS.items():
        if args.skip_hillis_steele and fn is hillis_steele_scan:
            continue
        repeats = args.repeats if fn is ops.selective_scan else args.baseline_repeats
        results[name] = measure_scan(fn, kwargs, repeats)
        print(f"{name}: {results[name]}", flush=True)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    title = (f"Selective scan, batch {shape[0]}, time {shape[1]}, channels {shape[2]}, state {shape[3]} "
             "(D, z, delta_bias, softplus on), float32")
    text = table(title, results, TableFormat("MB", ms_digits=1, peak_ratio_digits=1))
    fused = results["fused (dfnet4.ops)"]
    notes = [
        "",
        *machine.summary_lines(info),
        f"- Load average at end: {info['load_average_at_end'][0]:.2f} (1 min)",
        f"- Medians of {args.repeats} (fused) / {args.baseline_repeats} (baselines) runs after one warm-up; "
        "peak memory of a forward+backward including the inputs (MB = 10^6 bytes).",
    ]
    targets = {"fused forward+backward ms (target <= 150)": fused["forward_backward_s"] * 1e3}
    if "reference loop" in results:
        targets["reference / fused fwd+bwd (target >= 20)"] = (
            results["reference loop"]["forward_backward_s"] / fused["forward_backward_s"]
        )
    if "Hillis-Steele (pure MLX)" in results:
        hs = results["Hillis-Steele (pure MLX)"]
        targets["Hillis-Steele / fused fwd+bwd (target >= 100)"] = hs["forward_backward_s"] / fused["forward_backward_s"]
        targets["Hillis-Steele / fused peak memory (target >= 40)"] = hs["peak_bytes"] / fused["peak_bytes"]
    notes.append("")
    notes += [f"- {k}: {v:,.1f}" for k, v in targets.items()]
    text = text + "\n" + "\n".join(notes) + "\n"
    print(text)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "scan" if shape == (8, 500, 512, 16) else "scan_{}x{}x{}x{}".format(*shape)
    (args.out_dir / f"{stem}.md").write_text(text)
    payload = {"shape": dict(zip(("batch", "time", "channels", "state"), shape)), "machine": info,
               "repeats": {"fused": args.repeats, "baselines": args.baseline_repeats},
               "results": results, "targets": targets}
    (args.out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
