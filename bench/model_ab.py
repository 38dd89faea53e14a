"""What each of this round's fused primitives buys at the model level: DfNet4's forward+backward and
its training step with the primitives switched on one after another, interleaved in one run.

    python bench/model_ab.py [--impl gru/fused] [--batch 8 --frames 500 --repeats 5]

Variants (cumulative): pure MLX (the state before), + fused batch norm, + fused spectral loss,
+ fused depthwise convs, + large matmuls split over dfnet4's threads by the Linux BLAS shim,
+ the STFTs' backward passes on float views (dfnet4.dsp.real_fft; = the default now). Each repeat
times every variant once, so a change in the machine's load hits all of them alike. Writes
bench/results/model_ab.{md,json}.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import dfnet4  # noqa: F401  (first: routes MLX's BLAS before mlx.core is loaded)

from dfnet4.bench import machine, objective, variants, workloads

VARIANTS = [  # (name, fused layers, BLAS split, real FFTs with float-view VJPs)
    ("pure MLX (before)", variants.PURE_MLX, False, False),
    ("+ fused batch norm", variants.Fused(norm=True, conv=False, loss=False), False, False),
    ("+ fused spectral loss", variants.Fused(norm=True, conv=False, loss=True), False, False),
    ("+ fused depthwise convs", variants.Fused(), False, False),
    ("+ matmuls split over dfnet4's threads", variants.Fused(), True, False),
    ("+ STFT backward passes on float views (default)", variants.Fused(), True, True),
]
MEASURES = {"model_fwd_bwd": "forward+backward (uncompiled)", "train_step_eager": "train step (eager)"}


def main() -> int:
    p = variants.model_parser(__doc__.split("\n\n")[0], repeats=5)
    args = p.parse_args()
    info = machine.describe()
    model, batch = variants.build_model(args, p)
    steps = {}
    for name, fused, _, _ in VARIANTS:
        task = objective.resolve(model, loss_fused=fused.loss)
        steps[name] = {"model_fwd_bwd": workloads.model_fwd_bwd(model, batch, task.loss),
                       "train_step_eager": workloads.train_step(model, batch, task.loss, compiled=False)}
    def prepare(name: str) -> None:
        _, fused, split, float_views = next(v for v in VARIANTS if v[0] == name)
        variants.apply(model, fused)
        variants.use_blas_split(split)
        variants.use_float_view_ffts(float_views)

    samples = variants.interleaved(steps, args.repeats, prepare)
    medians = {name: {m: statistics.median(v["wall"]) for m, v in ms.items()} for name, ms in samples.items()}
    lines = [f"# What each fused primitive buys: {args.impl}, batch {args.batch} x {args.frames} frames", "",
             *machine.summary_lines(info), f"- Median of {args.repeats} interleaved rounds (ms)", "",
             "| variant | " + " | ".join(f"{label} | vs previous | vs pure MLX" for label in MEASURES.values()) + " |",
             "|---|" + "---|---|---|" * len(MEASURES)]
    base = medians[VARIANTS[0][0]]
    prev = base
    for name, *_ in VARIANTS:
        cells = []
        for m in MEASURES:
            t = medians[name][m]
            cells += [f"{t:.0f}", f"{prev[m] / t:.2f}x", f"{base[m] / t:.2f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        prev = medians[name]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_ab.md").write_text(text)
    (out / "model_ab.json").write_text(json.dumps({"impl": args.impl, "batch": args.batch, "frames": args.frames,
                                                   "samples_ms": samples, "median_ms": medians, "machine": info},
                                                  indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
