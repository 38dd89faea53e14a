"""dfnet4-bench: the backbone table (default) or the sequence-length scaling run (--scaling).

Prints a markdown table and writes <out>/<name>.{md,json,png}. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

PROG = "dfnet4-bench"


def _positive_int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark the dfnet4 backbones: forward, forward+backward, full model, compiled "
        "training step, peak memory; or (--scaling) time and memory versus sequence length.",
    )
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8, as the user's table)")
    p.add_argument("--frames", type=int, default=500, help="sequence length in frames (default 500)")
    p.add_argument("--hidden", type=int, default=256, help="backbone input = hidden = output size (default 256)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs per measurement (default 2)")
    p.add_argument("--only", default=None,
                   help="comma-separated implementations or backbones, e.g. 'mamba/fused,attention' or 'gru'")
    p.add_argument("--measures", default=None,
                   help="comma-separated subset of backbone_forward, backbone_fwd_bwd, model_forward, "
                   "model_fwd_bwd, train_step (default: all)")
    p.add_argument("--model-config", default="{}",
                   help="JSON object of extra DfNet4Config fields for the model-level measurements")
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate of the train step (dfnet4-train default)")
    p.add_argument("--threads", type=int, default=None, help="set DFNET4_NUM_THREADS for the fused kernels")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="OpenBLAS threads for MLX's matmuls (Linux; default: dfnet4's, see docs/blas.md)")
    p.add_argument("--buffer-cache-gib", default="auto",
                   help="MLX buffer-cache limit while measuring, in GiB, or 'auto' = MLX's memory limit "
                   "(as dfnet4-train sets it; default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results", help="directory for the result files (default bench/results)")
    p.add_argument("--name", default=None, help="result file stem (default 'backbones' or 'scaling')")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG chart")
    p.add_argument("--quiet", action="store_true", help="no per-measurement progress lines")
    v = p.add_argument_group("against PyTorch")
    v.add_argument("--vs-torch", action="store_true",
                   help="time dfnet4's DFN3 (gru/fused) forward, forward+backward and training step beside the "
                   "official PyTorch DeepFilterNet3 (bench/dfn3_torch.py; extra 'bench') in one run")
    v.add_argument("--torch-threads", type=_positive_int_list, default=[2, 1],
                   help="thread counts for --vs-torch, each side at the same count (default 2,1)")
    v.add_argument("--torch-blas-threads", default=None,
                   help="OpenBLAS threads for dfnet4's matmuls in --vs-torch: 'same' (the thread count of the run), "
                   "a number, or unset: dfnet4's default (1 unless OPENBLAS_NUM_THREADS is set, docs/blas.md)")
    v.add_argument("--torch-script", default=None,
                   help="path of bench/dfn3_torch.py (default: found under the working directory or the source tree)")
    g = p.add_argument_group("scaling run")
    g.add_argument("--scaling", action="store_true", help="run time/memory versus sequence length instead")
    g.add_argument("--scaling-frames", type=_positive_int_list, default=[125, 250, 500, 1000, 2000, 4000],
                   help="comma-separated lengths (default 125,250,500,1000,2000,4000)")
    g.add_argument("--scaling-measure", default="backbone_fwd_bwd",
                   help="what is timed per length (default backbone_fwd_bwd; e.g. train_step)")
    g.add_argument("--reference-max-frames", type=int, default=1000,
                   help="longest length for the slow reference implementations (default 1000; 0 = leave them out)")
    g.add_argument("--step-limit", type=float, default=60.0,
                   help="skip the longer lengths of a backbone once a step is predicted to take longer "
                   "than this many seconds (default 60)")
    g.add_argument("--memory-limit-gib", type=float, default=None,
                   help="skip the longer lengths once the peak memory is predicted to exceed this "
                   "(default: 70%% of physical memory)")
    return p


def _check_flags(args: argparse.Namespace) -> None:
    """The flags argparse cannot check alone; ValueError naming the flag."""
    if args.vs_torch and args.scaling:
        raise ValueError("--vs-torch and --scaling are separate runs; choose one")
    if args.torch_blas_threads not in (None, "same") and not (args.torch_blas_threads.isdigit()
                                                              and int(args.torch_blas_threads) >= 1):
        raise ValueError(f"--torch-blas-threads must be 'same' or an integer >= 1, got {args.torch_blas_threads!r}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    from dfnet4.bench.suite import select_measures

    if args.scaling and args.scaling_measure not in select_measures(None):
        raise ValueError(f"--scaling-measure must be one of {select_measures(None)}")


def _settings(args: argparse.Namespace):
    """(implementations, Settings) from the flags; ValueError naming the flag."""
    from dfnet4.bench.runner import Settings
    from dfnet4.bench.suite import DEFAULT_IMPLS, select, select_measures
    from dfnet4.memory import parse_cache_limit

    cache_gib = parse_cache_limit(args.buffer_cache_gib, "--buffer-cache-gib")
    try:
        model_config = json.loads(args.model_config)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model-config: not JSON: {exc}") from None
    if not isinstance(model_config, dict):
        raise ValueError(f"--model-config must be a JSON object, got {args.model_config!r}")
    impls = select(DEFAULT_IMPLS, args.only)
    settings = Settings(batch=args.batch, frames=args.frames, hidden=args.hidden, repeats=args.repeats,
                        warmup=args.warmup, measures=select_measures(args.measures), lr=args.lr, seed=args.seed,
                        model_config=model_config, buffer_cache_gib=cache_gib)
    return impls, settings


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (argv None: sys.argv); errors in the flags exit 2 with `dfnet4-bench: error: ...`."""
    from dfnet4.cli._common import entrypoint_setup, fail

    entrypoint_setup()
    args = parser().parse_args(argv)
    try:
        _check_flags(args)
        if args.threads is not None:
            os.environ["DFNET4_NUM_THREADS"] = str(args.threads)  # read by the kernels at each call
        if args.blas_threads is not None:
            from dfnet4 import _blas

            try:
                _blas.set_threads(args.blas_threads)
            except (ValueError, RuntimeError) as exc:
                raise ValueError(f"--blas-threads: {exc}") from None
        impls, settings = _settings(args)
    except ValueError as exc:
        return fail(PROG, str(exc))

    from dfnet4.bench import plot, report
    from dfnet4.bench.backbones import run_backbones
    from dfnet4.bench.scaling import run_scaling

    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("scaling" if args.scaling else "vs_torch" if args.vs_torch else "backbones")

    def save_partial(result: dict) -> None:  # a crash or kill late in a long run keeps what was measured
        report.write_json(result, out / f"{stem}.json")

    if args.vs_torch:
        from dfnet4.bench import vs_torch

        script = Path(args.torch_script) if args.torch_script else vs_torch.default_torch_script()
        if script is None or not script.is_file():
            return fail(PROG, "--vs-torch needs bench/dfn3_torch.py from dfnet4's source tree; run from there or "
                        "pass --torch-script PATH")
        result = vs_torch.run_vs_torch(settings, args.torch_threads, script, blas_threads=args.torch_blas_threads,
                                       log=log, on_update=save_partial)
        text = vs_torch.markdown(result)
        (out / f"{stem}.md").write_text(text)
        report.write_json(result, out / f"{stem}.json")
        print(text)
        print(f"\nwritten: {out / (stem + '.md')}, {out / (stem + '.json')}")
        return 0
    if args.scaling:
        if args.reference_max_frames == 0:
            impls = [i for i in impls if not i.reference]
        limit = None if args.memory_limit_gib is None else args.memory_limit_gib * 1024
        result = run_scaling(impls, settings, frames_list=args.scaling_frames, measure=args.scaling_measure,
                             reference_max_frames=args.reference_max_frames, step_limit_s=args.step_limit,
                             memory_limit_mib=limit, log=log, on_update=save_partial)
        text = report.scaling_markdown(result)
        extra = ["", "Fitted exponents:", *report.exponent_lines(result)]
        chart = plot.scaling_chart
    else:
        result = run_backbones(impls, settings, log=log, on_update=save_partial)
        text = report.backbones_markdown(result)
        extra = ["", "Target ratios:", *report.ratio_lines(result)]
        chart = plot.backbones_chart

    (out / f"{stem}.md").write_text(text)
    report.write_json(result, out / f"{stem}.json")
    if not args.no_plot:
        chart(result, out / f"{stem}.png")
    print(text)
    print("\n".join(extra))
    written = [f"{stem}.md", f"{stem}.json"] + ([] if args.no_plot else [f"{stem}.png"])
    print(f"\nwritten: {', '.join(str(out / w) for w in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
