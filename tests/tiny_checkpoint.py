"""A dfnet4 checkpoint of a tiny, randomly initialised DfNet4, for tests that need one on disk."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from _train_helpers import TINY_MODEL
from dfnet4.model import DfNet4, DfNet4Config
from dfnet4.train import checkpoint as ckpt


def save_tiny_checkpoint(root: Path, backbone: str, step: int, seed: int) -> tuple[Path, DfNet4]:
    """-> (run dir holding checkpoints/step-N, the model saved there)."""
    mx.random.seed(seed)
    model_cfg = {"backbone": backbone, **TINY_MODEL}
    model = DfNet4(DfNet4Config.from_dict(model_cfg))
    state = {"epoch": 0, "data_position": {"epoch": 0, "batch": 0}, "model_config": model_cfg}
    ckpt.save(root / "run" / "checkpoints", step, model.parameters(), {"step": mx.array(step, mx.uint64)}, state)
    return root / "run", model
