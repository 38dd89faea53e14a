"""Benchmark of the fused GRU (dfnet4.ops.gru) against mlx.nn.GRU and PyTorch's CPU nn.GRU.

Default shape: batch 8, time 500, 256 -> 256, float32. Reports forward and forward+backward
medians and peak memory, side by side in one run, as a markdown table printed and written to
bench/results/gru.md and gru.json (with MLX version, machine, thread count and which BLAS MLX's
matmuls used). Usage: python bench/gru.py [--repeats 5] [--batch 8 --time 500 --input 256 --hidden 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dfnet4  # noqa: F401  (first: lets dfnet4 choose MLX's BLAS before mlx.core loads)
import mlx.core as mx
import mlx.nn as nn
import numpy as np

from dfnet4.bench import machine
from dfnet4.bench.timing import measure

RESULTS = Path(__file__).resolve().parent / "results"


def median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() after one warm-up (dfnet4.bench.timing; fn evaluates its own MLX
    work, or runs PyTorch's, and returns nothing)."""
    return measure(fn, warmup=1, repeats=repeats).median_ms


def make_data(B, T, D, H, seed=0):
    """float32 straight from the generator (no float64 temporaries to inflate peak RSS)."""
    rng = np.random.default_rng(seed)
    s = np.float32(1.0 / np.sqrt(H))
    u = lambda *shape: (rng.random(shape, dtype=np.float32) * 2 - 1) * s  # noqa: E731
    return {
        "x": rng.standard_normal((B, T, D), dtype=np.float32),
        "Wx": u(3 * H, D),
        "Wh": u(3 * H, H),
        "b": u(3 * H),
        "bhn": u(H),
        "cot": rng.standard_normal((B, T, H), dtype=np.float32),
    }


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth_mb(fn) -> float | None:
    """Peak resident-memory growth of one call (Linux: reset VmHWM via /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _rss_kb("VmRSS")
        fn()
        return (_rss_kb("VmHWM") - before) / 1024
    except (OSError, KeyError):
        return None


def mlx_cases(data):
    """(forward, forward+backward) closures for the fused op and for mlx.nn.GRU."""
    from dfnet4.ops import gru

    a = {k: mx.array(v) for k, v in data.items()}
    cot = a.pop("cot")
    names = ["x", "Wx", "Wh", "b", "bhn"]
    args = [a[k] for k in names]

    def fused_fn(x, Wx, Wh, b, bhn):
        return gru(x, Wx, Wh, b, bhn)

    module = nn.GRU(a["x"].shape[-1], a["Wh"].shape[1])

    def nn_fn(x, Wx, Wh, b, bhn):
        module.Wx, module.Wh, module.b, module.bhn = Wx, Wh, b, bhn
        return module(x)

    cases = {}
    for label, fn in [("dfnet4.ops.gru (fused)", fused_fn), ("mlx.nn.GRU", nn_fn)]:
        grad = mx.grad(lambda *p, fn=fn: (fn(*p) * cot).sum(), argnums=list(range(5)))
        cases[label] = (lambda fn=fn: mx.eval(fn(*args)), lambda grad=grad: mx.eval(grad(*args)))
    return cases


def measure_mlx(cases, repeats):
    rows = {}
    for label, (fwd, fwd_bwd) in cases.items():
        row = {}
        for kind, fn in [("fwd", fwd), ("fwd_bwd", fwd_bwd)]:
            row[f"{kind}_ms"] = median_ms(fn, repeats)
            mx.clear_cache()
            mx.reset_peak_memory()
            before = mx.get_active_memory()  # inputs and weights: not counted, as for PyTorch
            fn()
            row[f"{kind}_peak_mb"] = (mx.get_peak_memory() - before) / 2**20
        rows[label] = row
    return rows


def torch_child(args) -> dict:
    """Runs in a subprocess so its peak RSS belongs to PyTorch alone."""
    import torch

    torch.set_num_threads(args.threads)
    data = make_data(args.batch, args.time, args.input, args.hidden)
    H = args.hidden
    model = torch.nn.GRU(args.input, H, batch_first=True)
    with torch.no_grad():  # same weights as the MLX runs; mlx's b -> bias_ih, bhn -> bias_hh's n part
        model.weight_ih_l0.copy_(torch.from_numpy(data["Wx"]))
        model.weight_hh_l0.copy_(torch.from_numpy(data["Wh"]))
        model.bias_ih_l0.copy_(torch.from_numpy(data["b"]))
        model.bias_hh_l0.zero_()
        model.bias_hh_l0[2 * H:].copy_(torch.from_numpy(data["bhn"]))
    x = torch.from_numpy(data["x"]).requires_grad_(True)
    cot = torch.from_numpy(data["cot"])

    def fwd():
        with torch.no_grad():
            model(x)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        x.grad = None
        (model(x)[0] * cot).sum().backward()

    # Peak memory is measured on the first call of a fresh process (--torch-peak): afterwards
    # freed blocks stay resident and hide the next call's peak.
    if args.torch_peak:
        return {f"{args.torch_peak}_peak_mb": peak_rss_growth_mb({"fwd": fwd, "fwd_bwd": fwd_bwd}[args.torch_peak])}
    out = {"fwd_ms": median_ms(fwd, args.repeats), "fwd_bwd_ms": median_ms(fwd_bwd, args.repeats)}
    out["torch"] = torch.__version__
    return out


def measure_torch(args):
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "torch not importable: PyTorch column skipped"
    cmd = [sys.executable, __file__, "--torch-child"] + [
        f"--{k}={getattr(args, k)}" for k in ("batch", "time", "input", "hidden", "repeats", "threads")]
    row = {}
    for extra in (["--torch-peak=fwd"], ["--torch-peak=fwd_bwd"], []):
        res = subprocess.run(cmd + extra, capture_output=True, text=True, check=True)
        row.update(json.loads(res.stdout.strip().splitlines()[-1]))
    return row, None


def table(rows, ref_label, torch_label):
    fused = rows["dfnet4.ops.gru (fused)"]
    lines = ["| implementation | forward ms | fwd+bwd ms | fwd peak MB | fwd+bwd peak MB | fused fwd+bwd speed-up |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, r in rows.items():
        speed = r["fwd_bwd_ms"] / fused["fwd_bwd_ms"]
        mem = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
        lines.append(f"| {label} | {r['fwd_ms']:.1f} | {r['fwd_bwd_ms']:.1f} | "
                     f"{mem(r['fwd_peak_mb'])} | {mem(r['fwd_bwd_peak_mb'])} | {speed:.2f}x |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--time", type=int, default=500)
    p.add_argument("--input", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=machine.kernel_threads())
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="", help="a line added to the results (e.g. how the run was set up)")
    p.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torch-peak", choices=["fwd", "fwd_bwd"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_child:
        print(json.dumps(torch_child(args)))
        return

    mx.set_default_device(mx.cpu)
    os.environ.setdefault("DFNET4_NUM_THREADS", str(args.threads))
    load_before = os.getloadavg()
    data = make_data(args.batch, args.time, args.input, args.hidden)
    rows = measure_mlx(mlx_cases(data), args.repeats)
    torch_row, torch_note = measure_torch(args)
    torch_label = f"PyTorch nn.GRU (CPU, {args.threads} threads)"
    if torch_row is not None:
        rows[torch_label] = torch_row
    load_after = os.getloadavg()

    fused = rows["dfnet4.ops.gru (fused)"]["fwd_bwd_ms"]
    ratios = {"fused_vs_mlx_nn_gru_fwd_bwd": rows["mlx.nn.GRU"]["fwd_bwd_ms"] / fused}
    if torch_row is not None:
        ratios["fused_vs_torch_fwd_bwd"] = torch_row["fwd_bwd_ms"] / fused
    meta = {
        "shape": {"batch": args.batch, "time": args.time, "input": args.input, "hidden": args.hidden},
        "dtype": "float32", "repeats": args.repeats, "threads": args.threads,
        "mlx": mx.__version__, "torch": torch_row["torch"] if torch_row else None,
        "machine": machine.describe(measure_blas=False),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "note": args.note,
    }
    md = [f"# GRU benchmark: batch {args.batch}, time {args.time}, {args.input} -> {args.hidden}, float32",
          "", table(rows, "mlx.nn.GRU", torch_label), "",
          "Speed-up = that row's fwd+bwd time / the fused op's (higher: fused is faster). "
          "Medians of %d runs after one warm-up; MLX peak = mx.get_peak_memory() of one call minus the memory already in use; "
          "PyTorch peak = peak RSS growth of the first call in a fresh process." % args.repeats, "",
          f"- fused fwd+bwd vs mlx.nn.GRU: {ratios['fused_vs_mlx_nn_gru_fwd_bwd']:.2f}x faster (target >= 5x)"]
    if "fused_vs_torch_fwd_bwd" in ratios:
        md.append(f"- fused fwd+bwd vs PyTorch CPU GRU: {ratios['fused_vs_torch_fwd_bwd']:.2f}x "
                  "(target >= 1.0x: no slower)")
    elif torch_note:
        md.append(f"- {torch_note}")
    md += [f"- threads: {args.threads} (dfnet4 kernels and torch.set_num_threads)",
           f"- MLX {meta['mlx']}; PyTorch {meta['torch']}",
           *machine.summary_lines(meta["machine"]),
           f"- load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} (1 min)",
           f"- {meta['date_utc']}"] + ([f"- note: {args.note}"] if args.note else [])
    text = "\n".join(md) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gru.md").write_text(text)
    (args.out / "gru.json").write_text(json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
