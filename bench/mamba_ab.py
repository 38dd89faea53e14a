"""The Mamba model's step against the GRU model's, and the Mamba block's backward schemes, interleaved
in one run: DfNet4 gru/fused and mamba/fused forward+backward, eager and compiled training step, the
Mamba blocks run as

    keep-in-proj  the default: the forward keeps in_proj's output and the scan's checkpoints; the
                  backward recomputes from there (mamba_block.py)
    input         the backward recomputes each block from its input (keep_in_proj=false)
    stored        MLX's autodiff of the fused block, every activation kept (recompute=false)
    no-scan       the default scheme with every scan swapped for a stand-in that costs (almost)
                  nothing (out = u * z): not a model to train, the lower bound any scan
                  kernel could reach (variants.without_scan)

    python bench/mamba_ab.py [--batch 8 --frames 500 --repeats 5]

Each round times every variant once, so a change in the machine's load hits all alike; wall and
process CPU time (all threads). One model per variant (a compiled step is traced once, with the
scheme its blocks had then). Writes bench/results/mamba_ab.{md,json}.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import dfnet4  # noqa: F401  (first: routes MLX's BLAS before mlx.core is loaded)

from dfnet4.backbones.mamba import MambaBlock
from dfnet4.bench import machine, objective, variants, workloads

SCHEMES = {"keep-in-proj": "keep in_proj's output and the scan's checkpoints (default)",
           "input": "recompute from the block input", "stored": "stored activations (autodiff)",
           "no-scan": "no scan: a free stand-in (lower bound, not a model to train)"}
MEASURES = {"model_fwd_bwd": "forward+backward", "train_step_eager": "train step (eager)",
            "train_step": "train step (compiled)"}


def use_scheme(blocks: list[MambaBlock], scheme: str) -> None:
    for b in blocks:
        b.set_backward(recompute=scheme != "stored", keep_in_proj=scheme in ("keep-in-proj", "no-scan"))


def main() -> int:
    p = variants.model_parser(__doc__.split("\n\n")[0], repeats=5)
    p.set_defaults(impl="mamba/fused")
    args = p.parse_args()
    info = machine.describe()
    runs = {}  # variant -> steps
    for impl, schemes in (("gru/fused", [None]), ("mamba/fused", list(SCHEMES))):
        for scheme in schemes:
            args.impl = impl
            model, batch = variants.build_model(args, p)
            if scheme:
                use_scheme([m for _, m in model.named_modules() if isinstance(m, MambaBlock)], scheme)
            if scheme == "no-scan":
                variants.without_scan(model)
            task = objective.resolve(model)
            runs[impl if scheme is None else f"{impl} {scheme}"] = {
                "model_fwd_bwd": workloads.model_fwd_bwd(model, batch, task.loss),
                "train_step_eager": workloads.train_step(model, batch, task.loss, compiled=False),
                "train_step": workloads.train_step(model, batch, task.loss, compiled=True)}

    samples = variants.interleaved(runs, args.repeats)
    med = {v: {m: {k: statistics.median(x) for k, x in d.items()} for m, d in ms.items()} for v, ms in samples.items()}
    gru = med["gru/fused"]
    lines = [f"# Mamba vs GRU model step, and the Mamba block's backward schemes: batch {args.batch} x "
             f"{args.frames} frames", "", *machine.summary_lines(info),
             f"- Median of {args.repeats} interleaved rounds; ms wall (process CPU time, all threads)", "",
             "| variant | " + " | ".join(f"{label} | / gru/fused" for label in MEASURES.values()) + " |",
             "|---|" + "---|---|" * len(MEASURES)]
    for name in runs:
        cells = []
        for m in MEASURES:
            t = med[name][m]
            cells += [f"{t['wall']:.0f} ({t['cpu']:.0f})", f"{t['wall'] / gru[m]['wall']:.2f}x"]
        label = name if name == "gru/fused" else f"{name.split()[0]}, {SCHEMES[name.split()[1]]}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mamba_ab.md").write_text(text)
    (out / "mamba_ab.json").write_text(json.dumps({"batch": args.batch, "frames": args.frames, "samples_ms": samples,
                                                   "median_ms": med, "machine": info}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
