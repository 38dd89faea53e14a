"""dfnet4-enhance: denoise audio files with a dfnet4 checkpoint or the official DeepFilterNet3 weights."""

from __future__ import annotations

import argparse
import math
import sys

from tqdm import tqdm

PROG = "dfnet4-enhance"
OUTPUT_FORMATS = ("flac", "wav")  # dfnet4.enhance.OUTPUT_FORMATS (not imported here: keeps --help fast)
SUBTYPES = ("auto", "PCM_16", "PCM_24", "PCM_32", "FLOAT")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Enhance audio files (any format soundfile reads, any "
                                "sample rate); writes WAV (or FLAC) files at 48 kHz, or at each input's rate with "
                                "--keep-rate, in the input's sample format where the output format has it. Inputs are "
                                "never replaced, existing outputs only with --overwrite. The model starts up and "
                                "skips near-silent hops as DeepFilterNet's official realtime runtime does "
                                "(docs/deploy.md).")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders (searched recursively)")
    p.add_argument("-o", "--out-dir", required=True, help="output folder (folder inputs keep their sub-folders)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint dir, run dir or its checkpoints/ dir (latest valid one)")
    src.add_argument("--dfn3", action="store_true", help="use the official DeepFilterNet3 weights (needs the dfn3 extra)")
    p.add_argument("--chunk-seconds", type=float, default=30.0,
                   help="longer inputs are processed in streaming chunks of this length (default 30)")
    p.add_argument("--stream", action="store_true",
                   help="read, enhance and write each file block by block (--chunk-seconds at a time) through "
                   "dfnet4's streaming enhancer: memory stays constant for inputs of any length; same output")
    p.add_argument("--keep-rate", action="store_true", help="write at each input's own sample rate")
    p.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default="wav",
                   help="output file format and extension (default wav)")
    p.add_argument("--subtype", choices=SUBTYPES, default="auto",
                   help="output sample format; auto (default) keeps the input's where the output format has it "
                   "(else FLOAT in WAV, PCM_24 in FLAC)")
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist already "
                   "(an input file is never replaced)")
    return p


def main(argv: list[str] | None = None) -> int:
    from dfnet4.cli._common import entrypoint_setup

    entrypoint_setup()
    args = build_parser().parse_args(argv)
    from dfnet4.atomic_io import DiskFullError
    from dfnet4.cli._common import fail
    from dfnet4.enhance import (check_outputs, collect_inputs, enhance_file, load_checkpoint_model, load_dfn3_model,
                                subtype_for)
    from dfnet4.train.checkpoint import CheckpointError

    subtype = None if args.subtype == "auto" else args.subtype
    try:
        if not math.isfinite(args.chunk_seconds) or not args.chunk_seconds > 0:
            raise ValueError(f"--chunk-seconds: got {args.chunk_seconds}, need a finite number > 0")
        if subtype is not None:
            subtype_for("", args.format, subtype)  # available in that format?
        jobs = collect_inputs(args.inputs, args.out_dir, args.format)
        check_outputs(jobs, args.overwrite)
        if args.dfn3:
            model, what = load_dfn3_model(), "DeepFilterNet3 (official weights)"
        else:
            model, info = load_checkpoint_model(args.checkpoint, log=lambda m: print(m, file=sys.stderr))
            what = f"{info['checkpoint']} (backbone {model.config.backbone}, step {info['step']})"
    except (ValueError, RuntimeError, CheckpointError) as exc:
        return fail(PROG, str(exc))
    print(f"{PROG}: model {what}", file=sys.stderr)
    failures = 0
    tty = sys.stderr.isatty()
    for job in tqdm(jobs, desc="enhance", unit="file", disable=len(jobs) < 2 or not tty):
        try:
            with tqdm(desc=job.src.name, unit="s", leave=False, disable=not (args.stream and tty)) as bar:
                r = enhance_file(model, job.src, job.dst, keep_rate=args.keep_rate, subtype=subtype,
                                 overwrite=args.overwrite, stream=args.stream, progress=bar.update,
                                 chunk_frames=max(1, int(args.chunk_seconds * 100)))  # 100 frames/s at hop 480
        except DiskFullError as exc:  # the next files would not fit either
            return fail(PROG, str(exc), status=1)
        except Exception as exc:  # one bad file must not stop the batch, but it is reported and counted
            failures += 1
            tqdm.write(f"{PROG}: could not enhance {job.src}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        note = f", {r['clipped_samples']} samples clipped" if r["clipped_samples"] else ""
        tqdm.write(f"{job.src} -> {r['output']} ({r['seconds']:.2f} s, {r['rate']} Hz, {r['channels']} ch, "
                   f"{r['subtype']}{note})", file=sys.stdout)
    if failures:
        return fail(PROG, f"{failures} of {len(jobs)} files could not be enhanced", status=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
