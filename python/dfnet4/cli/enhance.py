"""dfnet4-enhance: denoise audio files with a dfnet4 checkpoint or the official DeepFilterNet3 weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "dfnet4-enhance"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Enhance audio files (any format soundfile reads, any "
                                "sample rate); writes 16-bit WAV files at 48 kHz, or at each input's rate with --keep-rate.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders (searched recursively)")
    p.add_argument("-o", "--out-dir", required=True, help="output folder (folder inputs keep their sub-folders)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint dir, run dir or its checkpoints/ dir (latest valid one)")
    src.add_argument("--dfn3", action="store_true", help="use the official DeepFilterNet3 weights (needs the dfn3 extra)")
    p.add_argument("--chunk-seconds", type=float, default=30.0,
                   help="longer inputs are processed in streaming chunks of this length (default 30)")
    p.add_argument("--keep-rate", action="store_true", help="write at each input's own sample rate")
    return p


def main(argv: list[str] | None = None) -> int:
    from dfnet4.cli._common import entrypoint_setup

    entrypoint_setup()
    args = build_parser().parse_args(argv)
    from dfnet4.cli._common import fail
    from dfnet4.enhance import collect_inputs, enhance_file, load_checkpoint_model, load_dfn3_model
    from dfnet4.train.checkpoint import CheckpointError

    try:
        if not args.chunk_seconds > 0:
            raise ValueError(f"--chunk-seconds: got {args.chunk_seconds}, need > 0")
        jobs = collect_inputs(args.inputs)
        if args.dfn3:
            model, what = load_dfn3_model(), "DeepFilterNet3 (official weights)"
        else:
            model, info = load_checkpoint_model(args.checkpoint, log=lambda m: print(m, file=sys.stderr))
            what = f"{info['checkpoint']} (backbone {info['model_config'].get('backbone')}, step {info['step']})"
    except (ValueError, RuntimeError, CheckpointError) as exc:
        return fail(PROG, str(exc))
    print(f"{PROG}: model {what}", file=sys.stderr)
    out_dir = Path(args.out_dir)
    failures = 0
    for src, rel in jobs:
        try:
            r = enhance_file(model, src, out_dir / rel, keep_rate=args.keep_rate,
                             chunk_frames=max(1, int(args.chunk_seconds * 100)))  # 100 frames/s at hop 480
        except Exception as exc:  # one bad file must not stop the batch, but it is reported and counted
            failures += 1
            print(f"{PROG}: could not enhance {src}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        note = f", {r['clipped_samples']} samples clipped" if r["clipped_samples"] else ""
        print(f"{src} -> {r['output']} ({r['seconds']:.2f} s, {r['rate']} Hz, {r['channels']} ch{note})")
    if failures:
        return fail(PROG, f"{failures} of {len(jobs)} files could not be enhanced", status=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
