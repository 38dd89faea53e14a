"""Profile of one DfNet4 training step: every layer, the DSP, the loss and the optimizer timed alone,
forward and forward+backward (dfnet4.bench.profile).

    python bench/model_profile.py [--impl gru/fused] [--batch 8 --frames 500 --repeats 3 --warmup 1] [--pure-mlx]

--pure-mlx profiles the model with this round's fused layers and loss switched off (the state
before them). Writes bench/results/model_profile_<impl>[_pure_mlx].{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import dfnet4  # noqa: F401  (first: routes MLX's BLAS before mlx.core is loaded)
import mlx.core as mx

from dfnet4.bench import machine, objective, variants
from dfnet4.bench import profile as prof
from dfnet4.bench.runner import Settings, make_model
from dfnet4.bench.suite import DEFAULT_IMPLS
from dfnet4.memory import configure_buffer_cache


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default="gru/fused", help="implementation name as in dfnet4-bench --only")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--pure-mlx", action="store_true", help="batch norm, depthwise convs and loss terms in pure MLX")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    impls = {i.name: i for i in DEFAULT_IMPLS}
    if args.impl not in impls:
        p.error(f"--impl: unknown {args.impl!r}; choose from {sorted(impls)}")
    configure_buffer_cache(None)
    settings = Settings(batch=args.batch, frames=args.frames, repeats=args.repeats, warmup=args.warmup)
    mx.random.seed(settings.seed)
    model = make_model(impls[args.impl], settings)
    fused = variants.PURE_MLX if args.pure_mlx else variants.Fused()
    variants.apply(model, fused)
    task = objective.resolve(model, loss_fused=fused.loss)
    batch = task.make_batch(args.batch, args.frames)
    mx.eval(model.parameters(), batch)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    info = machine.describe()
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
