"""How much faster can any scan make the Mamba training step? The reference and fused scans against
a stand-in that costs (almost) nothing, in one run.

    python bench/mamba_bound.py [--batch 8 --frames 500 --repeats 3 --warmup 1 --measures train_step]

The stand-in replaces every selective scan in DfNet4 (both backward variants: the default
recomputing one and recompute=False) by out = u * z (one elementwise op, gradients to u and z
only; dfnet4.bench.variants.free_scan): NOT a model anyone should train, but a lower bound on the
step time of any scan implementation, so reference/stand-in is the largest speed-up a scan kernel
can give at the model level on this machine. Writes bench/results/mamba_bound.{md,json} (the
stored files are an earlier round's, measured with the stand-in u * silu(z)).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import dfnet4  # noqa: F401  (first: routes MLX's BLAS before mlx.core is loaded)
import mlx.nn as nn

from dfnet4.bench import machine, variants
from dfnet4.bench.runner import Runner, Settings, make_model
from dfnet4.bench.suite import DEFAULT_IMPLS, MEASURES, Impl


def model_without_scan(impl: Impl, settings: Settings) -> nn.Module:
    return variants.without_scan(make_model(impl, settings))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--measures", default="model_fwd_bwd,train_step")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    measures = [m.strip() for m in args.measures.split(",")]
    settings = Settings(batch=args.batch, frames=args.frames, repeats=args.repeats, warmup=args.warmup,
                        measures=measures)
    impls = {i.name: i for i in DEFAULT_IMPLS}
    rows = {}
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    for name, impl, factory in (
        ("mamba/reference", impls["mamba/reference"], make_model),
        ("mamba/fused", impls["mamba/fused"], make_model),
        ("mamba/no scan (lower bound)", impls["mamba/fused"], model_without_scan),
        ("mamba/fused-stored", impls["mamba/fused-stored"], make_model),
        ("mamba/fused-stored, no scan", impls["mamba/fused-stored"], model_without_scan),
    ):
        log(name)
        results, _ = Runner(settings, model_factory=factory, log=log).run_impl(impl, measures, args.frames)
        rows[name] = {m: results[m].get("median_ms") for m in measures}
    info = machine.describe(measure_blas=False)
    lines = [
        f"Mamba DfNet4, batch {args.batch}, {args.frames} frames: median ms of {args.repeats} runs "
        f"after {args.warmup} warm-up",
        "",
        "| implementation | " + " | ".join(MEASURES[m] for m in measures) + " |",
        "|---|" + "---:|" * len(measures),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:,.0f}" if row[m] else "failed" for m in measures) + " |")
    lines.append("")
    for m in measures:
        ref, fused, bound, stored, stored_bound = (rows[n][m] for n in rows)
        if ref and fused and bound:
            lines.append(f"- {MEASURES[m]}: reference / fused = {ref / fused:.2f}x; "
                         f"reference / no-scan bound = {ref / bound:.2f}x (the most any scan can give here)")
        if ref and stored and stored_bound:
            lines.append(f"- {MEASURES[m]}, activations stored: reference / fused-stored = {ref / stored:.2f}x; "
                         f"reference / its no-scan bound = {ref / stored_bound:.2f}x")
    lines += [""] + machine.summary_lines(info)
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mamba_bound.md").write_text(text)
    (out / "mamba_bound.json").write_text(json.dumps({"settings": settings.to_dict(), "machine": info,
                                                      "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
