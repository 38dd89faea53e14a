"""Building the model from a run config, checking the backbone/fused flags, and describing the runtime."""

from __future__ import annotations

import importlib
import platform

import mlx.core as mx

from dfnet4 import _extension

FUSED_FLAG_BACKBONE = {"fused_scan": "mamba", "fused_gru": "gru"}


def check_fused_flags(model_cfg: dict) -> None:
    """--fused-scan only with mamba, --fused-gru only with gru, and fused=True needs the extension."""
    backbone = model_cfg.get("backbone")
    for flag, owner in FUSED_FLAG_BACKBONE.items():
        value = model_cfg.get(flag)
        if value is None:
            continue
        cli = "--" + flag.replace("_", "-")
        if backbone != owner:
            raise ValueError(
                f"{cli if value else '--no-' + flag.replace('_', '-')} applies to --backbone {owner} only, "
                f"got --backbone {backbone}"
            )
        if value and not _extension.available():
            try:
                _extension.load()
            except ImportError as exc:
                raise ValueError(f"{cli}: the fused kernels are not available: {exc}") from exc


def model_classes():
    """(DfNet4Config, DfNet4) from dfnet4.model, with a clear error if it cannot be imported."""
    try:
        mod = importlib.import_module("dfnet4.model")
    except ImportError as exc:
        raise RuntimeError(f"dfnet4.model is not importable: {exc}") from exc
    return mod.DfNet4Config, mod.DfNet4


def build_model(model_cfg: dict):
    from dfnet4 import backbones

    if model_cfg.get("backbone") not in backbones.names():
        raise ValueError(f"--backbone: got {model_cfg.get('backbone')!r}, need one of {backbones.names()}")
    check_fused_flags(model_cfg)
    Config, Model = model_classes()
    try:
        config = Config.from_dict(dict(model_cfg))
    except TypeError as exc:  # unknown field names
        raise ValueError(f"[model] config: {exc}") from exc
    return Model(config)


def blas_description() -> str | None:
    """The one-line BLAS summary of dfnet4._blas (branch blas), if that optional module exists."""
    try:
        blas = importlib.import_module("dfnet4._blas")
    except ImportError:
        return None
    try:
        if hasattr(blas, "report"):
            return str(blas.report(measure=False).get("summary"))
        if hasattr(blas, "status"):
            return str(blas.status())
    except Exception as exc:  # a broken shim report must not stop training
        return f"dfnet4._blas report failed: {exc}"
    return f"dfnet4._blas loaded ({getattr(blas, '__file__', '?')})"


def runtime_header(model_cfg: dict, world_size: int) -> dict:
    return {
        "backbone": model_cfg.get("backbone"),
        "fused_scan": model_cfg.get("fused_scan"),
        "fused_gru": model_cfg.get("fused_gru"),
        "extension_available": _extension.available(),
        "mlx_version": mx.__version__,
        "device": str(mx.default_device()),
        "blas": blas_description(),
        "world_size": world_size,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
