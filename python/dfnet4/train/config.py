"""The run configuration: one TOML file with [model], [data], [loss] and [train] tables.

Precedence: built-in defaults < --config FILE < command-line flags. `dfnet4-train --print-config`
prints the resolved configuration as TOML, which `--config` reads back unchanged.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from dfnet4.data.mixer import MixConfig
from dfnet4.memory import parse_cache_limit
from dfnet4.train.losses import LossConfig


@dataclass
class DataConfig:
    cache_dir: str = ""  # "" = the built-in synthetic set
    builtin_dir: str = ""  # where the built-in set is generated ("" = $DFNET4_CACHE_DIR or ~/.cache/dfnet4)
    builtin_speech: int = 48
    builtin_noise: int = 24
    samples_per_epoch: int = 256
    valid_samples: int = 8
    prefetch: int = 4
    mix: MixConfig = field(default_factory=MixConfig)


@dataclass
class TrainConfig:
    out: str = "runs/dfnet4"
    # small defaults so that a first run finishes in minutes on a laptop CPU; for real training use
    # e.g. --batch-size 32 --segment-seconds 3 (DeepFilterNet's scale) on a GPU
    batch_size: int = 4
    epochs: int = 10
    steps: int = 0  # > 0: stop after this many optimizer steps (overrides epochs)
    lr: float = 5e-4
    warmup_steps: int = 100
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    clip_grad: float = 1.0
    seed: int = 42
    val_every: int = 0  # > 0: also validate every N steps (always at each epoch end and at the end)
    validate_at_start: bool = True  # validate the untrained model too (a baseline for the curves)
    checkpoint_every: int = 0  # > 0: also checkpoint every N steps (always at epoch ends and at the end)
    keep_checkpoints: int = 3
    log_every: int = 1
    # mx.compile the train step: true, false, or "auto" = on a GPU only. MLX's CPU backend compiles
    # every fused kernel with the system C++ compiler on first use (cached in $TMPDIR/mlx), which costs
    # minutes for the recurrent backbones' reference paths on a small CPU, so auto skips it there.
    compile: bool | str = "auto"
    # MLX buffer-cache limit in GiB, or "auto" = MLX's memory limit (dfnet4.memory: the CPU default
    # of 32 MiB turns every large activation into fresh page faults on every step)
    buffer_cache_gib: float | str = "auto"
    metrics_clips: int = 4  # validation clips scored with PESQ/STOI (slow) when the packages exist


@dataclass
class RunConfig:
    model: dict[str, Any] = field(default_factory=lambda: {"backbone": "mamba"})
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return _drop_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        cfg = cls()
        apply_dict(cfg, d)
        return cfg

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def validate(self) -> None:
        t = self.train
        for name in ("batch_size", "keep_checkpoints", "log_every"):
            if getattr(t, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: got {getattr(t, name)}, need >= 1")
        for name in ("epochs", "steps", "warmup_steps", "val_every", "checkpoint_every"):
            if getattr(t, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')}: got {getattr(t, name)}, need >= 0")
        if t.epochs == 0 and t.steps == 0:
            raise ValueError("--epochs and --steps are both 0: nothing to train")
        if not t.lr > 0:
            raise ValueError(f"--lr: got {t.lr}, need > 0")
        if t.weight_decay < 0:
            raise ValueError(f"--weight-decay: got {t.weight_decay}, need >= 0")
        if not t.clip_grad > 0:
            raise ValueError(f"--clip-grad: got {t.clip_grad}, need > 0")
        if t.compile not in (True, False, "auto"):
            raise ValueError(f"train.compile: got {t.compile!r}, need true, false or \"auto\"")
        parse_cache_limit(t.buffer_cache_gib, "train.buffer_cache_gib")
        if self.data.valid_samples < 1:
            raise ValueError(f"data.valid_samples: got {self.data.valid_samples}, need >= 1")
        self.data.mix.validate()
        self.loss.validate()


def _drop_none(x):
    """TOML has no null: unset optional values are simply absent."""
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_drop_none(v) for v in x]
    return x


def apply_dict(obj, d: dict, where: str = "") -> None:
    """Set dataclass fields of `obj` from the nested dict `d`; unknown keys are errors."""
    for key, value in d.items():
        name = f"{where}{key}"
        if isinstance(obj, dict):  # free-form table ([model] goes to DfNet4Config, which checks it)
            obj[key] = value
            continue
        if not any(f.name == key for f in dataclasses.fields(obj)):
            known = ", ".join(f.name for f in dataclasses.fields(obj))
            raise ValueError(f"config: unknown key {name!r} (known here: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) or isinstance(current, dict):
            if not isinstance(value, dict):
                raise ValueError(f"config: {name!r} must be a table, got {value!r}")
            apply_dict(current, value, name + ".")
        else:
            if isinstance(current, bool) and not isinstance(value, bool):
                raise ValueError(f"config: {name!r} must be true or false, got {value!r}")
            if isinstance(current, (int, float)) and not isinstance(current, bool):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"config: {name!r} must be a number, got {value!r}")
                value = type(current)(value) if isinstance(current, float) or float(value).is_integer() else value
            setattr(obj, key, value)


def load_toml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config: file {str(p)!r} does not exist")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config: {str(p)!r} is not valid TOML: {exc}") from exc
