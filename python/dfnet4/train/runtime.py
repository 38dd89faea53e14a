"""Building the model from a run config, checking the backbone's fused switch, and describing the runtime."""

from __future__ import annotations

import platform

import mlx.core as mx

from dfnet4 import _blas, _extension, backbones
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.model.config import fused_choices


def fused_switches(model_cfg: dict) -> dict[str, bool | None]:
    """{fused flag key (fused_scan): the value set in the [model] table, or None} per backbone with one."""
    chosen = fused_choices(model_cfg)
    return {flag: chosen.get(owner, {}).get("fused") for flag, owner in backbones.fused_flags().items()}


def check_fused_flags(model_cfg: dict) -> None:
    """A backbone's fused switch only with that backbone (--fused-scan with mamba, --fused-gru with
    gru: dfnet4.backbones' registry), and fused=True needs the extension."""
    backbone = model_cfg.get("backbone", backbones.DEFAULT)
    owners = backbones.fused_flags()
    for flag, value in fused_switches(model_cfg).items():
        if value is None:
            continue
        cli = "--" + flag.replace("_", "-")
        if backbone != owners[flag]:
            raise ValueError(
                f"{cli if value else '--no-' + flag.replace('_', '-')} applies to --backbone {owners[flag]} only, "
                f"got --backbone {backbone}"
            )
        if value and not _extension.available():
            try:
                _extension.load()
            except ImportError as exc:
                raise ValueError(f"{cli}: the fused kernels are not available: {exc}") from exc


def build_model(model_cfg: dict) -> DfNet4:
    config = DfNet4Config.from_dict(dict(model_cfg))  # first: an unknown backbone is named here
    check_fused_flags(model_cfg)
    return DfNet4(config)


def blas_description() -> str:
    """The one-line summary of which BLAS MLX's CPU matmuls run on (dfnet4._blas)."""
    try:
        return str(_blas.report(measure=False).get("summary"))
    except Exception as exc:  # a broken report must not stop training
        return f"dfnet4._blas report failed: {exc}"


def runtime_header(model_cfg: dict, world_size: int) -> dict:
    return {
        "backbone": model_cfg.get("backbone"),
        **fused_switches(model_cfg),
        "extension_available": _extension.available(),
        "mlx_version": mx.__version__,
        "device": str(mx.default_device()),
        "blas": blas_description(),
        "world_size": world_size,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
