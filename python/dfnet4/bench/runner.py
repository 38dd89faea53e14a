"""Builds each implementation, times every requested measurement, and collects the results.

A measurement that fails is recorded as {"error": ...} and reported in the table instead of
aborting the whole run (a missing fused extension must not hide the other rows).
"""

from __future__ import annotations

import gc
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from dfnet4.bench import objective, workloads
from dfnet4.bench.suite import MEASURES, Impl
from dfnet4.bench.timing import measure
from dfnet4.memory import configure_buffer_cache, parse_cache_limit

BACKBONE_MEASURES = ("backbone_forward", "backbone_fwd_bwd")
MODEL_MEASURES = ("model_forward", "model_fwd_bwd", "train_step")


@dataclass
class Settings:
    batch: int = 8
    frames: int = 500
    hidden: int = 256  # backbone-level input = hidden = output size
    repeats: int = 5
    warmup: int = 2
    measures: list[str] = field(default_factory=lambda: list(MEASURES))
    lr: float = 5e-4  # AdamW as dfnet4.train's defaults: lr 5e-4, weight decay 0.05, grad clip 1.0
    seed: int = 0
    freq_bins: int = 481  # used when the model has no config to derive it from
    model_config: dict = field(default_factory=dict)  # extra DfNet4Config fields for every model
    loss_config: dict = field(default_factory=dict)  # LossConfig fields differing from dfnet4-train's defaults
    # MLX buffer-cache limit (GiB) while measuring; None = MLX's memory limit, as dfnet4-train sets it
    buffer_cache_gib: float | None = None

    def __post_init__(self):
        for name in ("batch", "frames", "hidden", "repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Settings: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"Settings: warmup must be an integer >= 0, got {self.warmup!r}")
        parse_cache_limit(self.buffer_cache_gib, "Settings: buffer_cache_gib")
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"Settings: unknown measures {unknown}; choose from {list(MEASURES)}")

    def to_dict(self) -> dict:
        return asdict(self)


BackboneFactory = Callable[[Impl, Settings], nn.Module]
ModelFactory = Callable[[Impl, Settings], nn.Module]


def make_backbone(impl: Impl, settings: Settings) -> nn.Module:
    from dfnet4.backbones import create

    h = settings.hidden
    return create(impl.backbone, h, h, h, **impl.backbone_options)


def make_model(impl: Impl, settings: Settings) -> nn.Module:
    from dfnet4.model import DfNet4, DfNet4Config

    return DfNet4(DfNet4Config.from_tables(settings.model_config, impl.model_options))


def parameter_count(module: nn.Module) -> int:
    return sum(v.size for _, v in tree_flatten(module.trainable_parameters()))


def model_config_dict(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    return to_dict() if to_dict is not None else None


def _error(exc: BaseException) -> dict:
    return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}


def _free() -> None:
    gc.collect()
    mx.synchronize()
    mx.clear_cache()


class Runner:
    def __init__(
        self,
        settings: Settings,
        *,
        backbone_factory: BackboneFactory = make_backbone,
        model_factory: ModelFactory = make_model,
        log: Callable[[str], None] = print,
    ):
        self.settings = settings
        configure_buffer_cache(settings.buffer_cache_gib)
        self.backbone_factory = backbone_factory
        self.model_factory = model_factory
        self.log = log
        self.loss_name: str | None = None

    def _time(self, impl: Impl, key: str, frames: int, build_step: Callable[[], workloads.Step]) -> dict:
        s = self.settings
        try:
            step = build_step()
            result = measure(step, warmup=s.warmup, repeats=s.repeats).to_dict()
            self.log(
                f"  {impl.name:18s} {MEASURES[key]:40s} T={frames:<5d} "
                f"{result['median_ms']:10.1f} ms  (IQR {result['q1_ms']:.1f}-{result['q3_ms']:.1f})  "
                f"peak {result['peak_mib']:.1f} MiB"
            )
            return result
        except Exception as exc:  # recorded and shown in the table
            self.log(f"  {impl.name:18s} {MEASURES[key]:40s} T={frames:<5d} FAILED: {type(exc).__name__}: {exc}")
            return _error(exc)

    def run_impl(self, impl: Impl, measures: list[str], frames: int) -> tuple[dict, dict]:
        """Time `measures` of `impl` at `frames`; returns (results per measure, info about the build)."""
        s = self.settings
        results: dict[str, dict] = {}
        info: dict = {}
        wanted_bb = [m for m in BACKBONE_MEASURES if m in measures]
        wanted_model = [m for m in MODEL_MEASURES if m in measures]
        if wanted_bb:
            mx.random.seed(s.seed)
            try:
                backbone = self.backbone_factory(impl, s)
                x = mx.random.normal((s.batch, frames, s.hidden))
                mx.eval(backbone.parameters(), x)
                info["backbone_parameters"] = parameter_count(backbone)
            except Exception as exc:
                failure = _error(exc)
                self.log(f"  {impl.name}: building the backbone FAILED: {failure['error']}")
                results.update({m: failure for m in wanted_bb})
            else:
                builders = {
                    "backbone_forward": lambda: workloads.backbone_forward(backbone, x),
                    "backbone_fwd_bwd": lambda: workloads.backbone_fwd_bwd(backbone, x),
                }
                for m in wanted_bb:
                    results[m] = self._time(impl, m, frames, builders[m])
                del backbone, x, builders
            _free()
        if wanted_model:
            mx.random.seed(s.seed)
            try:
                model = self.model_factory(impl, s)
                task = objective.resolve(model, s.freq_bins, s.loss_config)
                self.loss_name = task.name
                batch = task.make_batch(s.batch, frames)  # white noise: timings don't depend on content
                mx.eval(model.parameters(), batch)
                info["model_input_frames"] = batch["noisy_spec"].shape[1]
                info["model_parameters"] = parameter_count(model)
                info["model_config"] = model_config_dict(model)
                info["loss"] = task.name
            except Exception as exc:
                failure = _error(exc)
                self.log(f"  {impl.name}: building the model FAILED: {failure['error']}")
                results.update({m: failure for m in wanted_model})
            else:
                builders = {
                    "model_forward": lambda: workloads.model_forward(model, batch),
                    "model_fwd_bwd": lambda: workloads.model_fwd_bwd(model, batch, task.loss),
                    "train_step": lambda: workloads.train_step(model, batch, task.loss, s.lr),
                }
                for m in wanted_model:  # train_step last: it changes the parameters
                    results[m] = self._time(impl, m, frames, builders[m])
                del model, batch, builders
            _free()
        return results, info
