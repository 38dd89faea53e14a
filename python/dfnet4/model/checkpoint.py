"""Checkpoints that carry their model: weights (safetensors) with the DfNet4Config as JSON metadata.

`load` rebuilds the same backbone and sizes from the file alone, so a checkpoint can never be
loaded into a different architecture by accident.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from dfnet4.atomic_io import atomic_path
from dfnet4.model.config import DfNet4Config
from dfnet4.model.dfnet4 import DfNet4

CONFIG_KEY = "dfnet4_config"


def save(model: DfNet4, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write all parameters (BatchNorm statistics included) and the config to `path` (.safetensors)."""
    meta = dict(metadata or {})
    meta[CONFIG_KEY] = json.dumps(model.config.to_dict())
    path = Path(path)
    if path.suffix != ".safetensors":  # as mx.save_safetensors names it
        path = path.with_name(path.name + ".safetensors")
    with atomic_path(path, suffix=".safetensors") as tmp:  # complete or absent, never half written
        mx.save_safetensors(str(tmp), dict(tree_flatten(model.parameters())), metadata=meta)


def load(path: str | Path, **config_overrides) -> tuple[DfNet4, dict[str, str]]:
    """-> (model built from the stored config, with its weights; the other metadata).

    `config_overrides` may change run-time choices such as the fused switches (`mamba={"fused": False}`,
    or the old spelling `fused_scan=False`), not sizes.
    """
    weights, meta = mx.load(str(path), return_metadata=True)
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path}: no {CONFIG_KEY} metadata; not a dfnet4 checkpoint")
    cfg = DfNet4Config.from_tables(json.loads(meta.pop(CONFIG_KEY)), config_overrides)
    model = DfNet4(cfg)
    expected = dict(tree_flatten(model.parameters()))
    if set(expected) != set(weights):
        raise ValueError(
            f"{path}: parameters do not match backbone {cfg.backbone!r}: "
            f"missing {sorted(set(expected) - set(weights))}, unexpected {sorted(set(weights) - set(expected))}"
        )
    model.update(tree_unflatten(list(weights.items())))
    return model, meta
