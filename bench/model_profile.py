"""Profile of one DfNet4 training step: every layer, the DSP, the loss and the optimizer timed alone,
forward and forward+backward (dfnet4.bench.profile).

    python bench/model_profile.py [--impl gru/fused] [--batch 8 --frames 500 --repeats 3 --warmup 1] [--pure-mlx]

--pure-mlx profiles the model with this round's fused layers and loss switched off (the state
before them). Writes bench/results/model_profile_<impl>[_pure_mlx].{md,json}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dfnet4  # noqa: F401  (first: routes MLX's BLAS before mlx.core is loaded)

from dfnet4.bench import machine, objective, variants
from dfnet4.bench import profile as prof


def main() -> int:
    p = variants.model_parser(__doc__.split("\n\n")[0], repeats=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--pure-mlx", action="store_true", help="batch norm, depthwise convs and loss terms in pure MLX")
    args = p.parse_args()
    info = machine.describe()
    model, batch = variants.build_model(args, p)
    fused = variants.PURE_MLX if args.pure_mlx else variants.Fused()
    variants.apply(model, fused)
    task = objective.resolve(model, loss_fused=fused.loss)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = prof.profile(model, batch, task.loss, warmup=args.warmup, repeats=args.repeats, loss_fused=fused.loss,
                          log=log)
    result.update(impl=args.impl, batch=args.batch, frames=args.frames, loss=task.name, machine=info,
                  fused=vars(fused))
    which = "pure-MLX layers and loss (as before this round)" if args.pure_mlx else "fused layers and loss"
    title = (f"Step profile: {args.impl}, {which}, batch {args.batch} x {args.frames} frames "
             f"(median of {args.repeats})")
    text = prof.markdown(result, title, machine.summary_lines(info))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "model_profile_" + args.impl.replace("/", "_").replace(".", "_") + ("_pure_mlx" if args.pure_mlx else "")
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
