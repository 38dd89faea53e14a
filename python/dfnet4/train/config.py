"""The run configuration: one TOML file with [model], [data], [loss], [train] and [init] tables.

Precedence: built-in defaults < --config FILE < command-line flags (with --resume, the checkpoint's
stored run config takes the place of the defaults). `dfnet4-train --print-config` prints the
resolved configuration as TOML, which `--config` reads back unchanged.

Every field carries its constraints (dfnet4.schema.param); `RunConfig.validate` checks them all,
the [model] table through DfNet4Config, and the constraints between fields.
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

from dfnet4 import backbones
from dfnet4.data.audio import SAMPLE_RATE
from dfnet4.data.mixer import MixConfig
from dfnet4.model.config import merge_model_tables
from dfnet4.schema import ConfigError, param, require
from dfnet4.schema import validate as validate_fields
from dfnet4.train.init import InitConfig
from dfnet4.train.losses import LossConfig


def _not_blank(path: str) -> str | None:
    return "need a directory name" if not path.strip() else None


@dataclass
class DataConfig:
    cache_dir: str = ""  # "" = the built-in synthetic set
    builtin_dir: str = ""  # where the built-in set is generated ("" = $DFNET4_CACHE_DIR or ~/.cache/dfnet4)
    builtin_speech: int = param(48, ge=1)
    builtin_noise: int = param(24, ge=1)
    samples_per_epoch: int = param(256, ge=1)
    valid_samples: int = param(8, ge=1)
    # a real validation set instead of `valid_samples` mixtures: DIR/noisy and DIR/clean, files paired
    # by name (as dfnet4-eval --noisy/--clean), scored with dfnet4-eval's metrics ("" = mixtures)
    valid_dir: str = ""
    prefetch: int = param(4, ge=1)
    mix: MixConfig = field(default_factory=MixConfig)


@dataclass
class TrainConfig:
    out: str = param("runs/dfnet4", check=_not_blank)
    # small defaults so that a first run finishes in minutes on a laptop CPU; for real training use
    # e.g. --batch-size 32 --segment-seconds 3 (DeepFilterNet's scale) on a GPU
    batch_size: int = param(4, ge=1)
    epochs: int = param(10, ge=0)
    steps: int = param(0, ge=0)  # > 0: stop after this many optimizer steps (overrides epochs)
    lr: float = param(5e-4, gt=0)
    warmup_steps: int = param(100, ge=0)
    min_lr: float = param(1e-6, ge=0)
    weight_decay: float = param(0.05, ge=0)
    clip_grad: float = param(1.0, gt=0)
    seed: int = param(42, ge=0, le=2**63 - 1)
    val_every: int = param(0, ge=0)  # > 0: also validate every N steps (always at each epoch end and at the end)
    validate_at_start: bool = True  # validate the untrained model too (a baseline for the curves)
    checkpoint_every: int = param(0, ge=0)  # > 0: also checkpoint every N steps (always at epoch ends and at the end)
    keep_checkpoints: int = param(3, ge=1)
    log_every: int = param(1, ge=1)
    # mx.compile the train step: true, false, or "auto" = on a GPU only. MLX's CPU backend compiles
    # every fused kernel with the system C++ compiler on first use (cached in $TMPDIR/mlx), which costs
    # minutes for the recurrent backbones' reference paths on a small CPU, so auto skips it there.
    compile: bool | str = param("auto", choices=("auto",))
    # MLX buffer-cache limit in GiB, or "auto" = MLX's memory limit (dfnet4.memory: the CPU default
    # of 32 MiB turns every large activation into fresh page faults on every step)
    buffer_cache_gib: float | str = param("auto", ge=0, choices=("auto",))
    metrics_clips: int = param(4, ge=0)  # validation clips scored with PESQ/STOI (slow) when the packages exist
    # distributed runs: seconds to wait for every rank to connect before giving up with a message
    dist_timeout: float = param(300.0, gt=0)


@dataclass
class RunConfig:
    # the [model] table as given (DfNet4Config.from_dict reads it); its backbone tables are merged key by
    # key and old flat keys are moved into them as each layer (checkpoint, file, flags) is applied
    model: dict[str, Any] = field(default_factory=lambda: {"backbone": backbones.DEFAULT},
                                  metadata={"merge": merge_model_tables})
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: InitConfig = field(default_factory=InitConfig)

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
        """Every field by its rule, the [model] table as a DfNet4Config, then the constraints between
        fields. Raises ConfigError naming the dotted key (`train.lr`, `model.conv_ch`)."""
        validate_fields(self)
        t, d = self.train, self.data
        distills = bool(self.init.source) and self.init.stage1_steps + self.init.stage2_steps > 0
        require(t.epochs > 0 or t.steps > 0 or distills, "train.steps", t.steps,
                "train.steps or train.epochs > 0 (both are 0: nothing to train)")
        require(d.samples_per_epoch >= t.batch_size, "data.samples_per_epoch", d.samples_per_epoch,
                f">= train.batch_size ({t.batch_size}) for one batch per epoch")
        self.loss.validate()
        self.validate_model()

    def validate_model(self) -> None:
        from dfnet4.model.config import DfNet4Config

        try:  # an unknown backbone included: DfNet4Config names it
            model = DfNet4Config.from_dict(dict(self.model))
        except ConfigError as exc:
            raise exc.under("model.") from None
        require(model.sr == SAMPLE_RATE, "model.sr", model.sr, f"{SAMPLE_RATE} (the training data's rate)")


def _drop_none(x):
    """TOML has no null: unset optional values are simply absent."""
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_drop_none(v) for v in x]
    return x


def apply_dict(obj, d: dict, where: str = "") -> None:
    """Set dataclass fields of `obj` from the nested dict `d`; unknown keys and scalars given for
    tables are errors. Values are checked by RunConfig.validate (dfnet4.schema)."""
    for key, value in d.items():
        name = f"{where}{key}"
        if isinstance(obj, dict):  # free-form table ([model] goes to DfNet4Config, which checks it)
            obj[key] = value
            continue
        f = next((f for f in dataclasses.fields(obj) if f.name == key), None)
        if f is None:
            known = ", ".join(f.name for f in dataclasses.fields(obj))
            raise ConfigError(name, f"unknown key (known here: {known})")
        current = getattr(obj, key)
        if "merge" in f.metadata and isinstance(value, dict):  # a table with its own merge ([model])
            try:
                setattr(obj, key, f.metadata["merge"](current, value))
            except ConfigError as exc:
                raise exc.under(name + ".") from None
        elif dataclasses.is_dataclass(current) or isinstance(current, dict):
            if not isinstance(value, dict):
                raise ConfigError(name, f"got {value!r}, need a table")
            apply_dict(current, value, name + ".")
        else:
            if isinstance(value, dict):
                raise ConfigError(name, "got a table, need a single value")
            setattr(obj, key, value)


def flatten(d: dict, where: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{where}{key}."))
        else:
            out[f"{where}{key}"] = value
    return out


def config_changes(before: dict, after: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every key whose value differs between two config dicts."""
    a, b = flatten(before), flatten(after)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def load_toml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config: file {str(p)!r} does not exist")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config: {str(p)!r} is not valid TOML: {exc}") from exc
