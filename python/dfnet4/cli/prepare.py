"""dfnet4-prepare: speech/noise/RIR folders -> a sharded 48 kHz training cache (resumable)."""

from __future__ import annotations

import argparse
import sys

PROG = "dfnet4-prepare"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Read audio files (any format soundfile reads, any rate), resample them to "
        "48 kHz mono and write the sharded cache that dfnet4-train --cache-dir reads. Re-running on the "
        "same folders resumes: finished shards are kept. Unreadable files are reported and skipped.")
    p.add_argument("--speech", required=True, help="folder of clean speech (searched recursively)")
    p.add_argument("--noise", required=True, help="folder of noise (searched recursively)")
    p.add_argument("--rir", help="folder of room impulse responses (optional; enables reverb)")
    p.add_argument("--out", required=True, help="cache directory to write")
    p.add_argument("--files-per-shard", type=int, default=32, help="input files per shard (default 32)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="sample storage type")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    from dfnet4.cli._common import entrypoint_setup

    entrypoint_setup()
    args = build_parser().parse_args(argv)
    from dfnet4.atomic_io import DiskFullError
    from dfnet4.cli._common import fail
    from dfnet4.data.prepare import prepare, summary

    try:
        index = prepare(args.out, args.speech, args.noise, args.rir, args.files_per_shard, args.dtype,
                        progress=not args.no_progress)
    except DiskFullError as exc:  # complete shards are kept: re-running after freeing space resumes
        return fail(PROG, f"{exc}; free some space and run the same command again to resume", status=1)
    except (ValueError, FileNotFoundError) as exc:
        return fail(PROG, str(exc))
    for line in summary(index):
        print(f"{PROG}: {line}")
    failed = sum(len(k["failed"]) for k in index["kinds"].values())
    print(f"{PROG}: wrote {args.out}/index.json" + (f" ({failed} unreadable files listed there)" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
