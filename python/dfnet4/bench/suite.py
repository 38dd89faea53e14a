"""What is benchmarked: the backbone implementations, the measurements, and the target ratios.

Backbone sizes follow the user's document (seed/BACKBONES.md, its "Code" sections):
input = hidden = output = 256; mamba 2 layers, d_state 16, d_conv 4, expand 2; gru 1 layer,
linear_groups 8, skip; attention 2 layers, 4 heads, linear_groups 8, skip (unbounded causal window).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# measurement key -> honest label (used as table column and chart legend)
MEASURES: dict[str, str] = {
    "backbone_forward": "backbone forward",
    "backbone_fwd_bwd": "backbone forward+backward",
    "model_forward": "model forward",
    "model_fwd_bwd": "model forward+backward",
    "train_step": "train step (fwd+bwd+AdamW, compiled)",
}

MEASURE_NOTES: dict[str, str] = {
    "backbone_forward": "backbone alone, output evaluated, no gradients",
    "backbone_fwd_bwd": "backbone alone, value_and_grad of mean(y^2) w.r.t. parameters and input",
    "model_forward": "DfNet4 with that backbone: noisy spectrum in, enhanced spectrum + aux out; uncompiled",
    "model_fwd_bwd": "DfNet4: value_and_grad of the loss (audio -> STFT -> model -> iSTFT -> loss, see Loss) "
    "w.r.t. all parameters; uncompiled, no optimizer",
    "train_step": "DfNet4: one mx.compile'd step over model, AdamW and RNG state, as dfnet4.train runs it: "
    "loss, gradients, gradient-norm clipping (1.0), AdamW update (weight decay 0.05)",
}


@dataclass(frozen=True)
class Impl:
    """One backbone implementation: how to build it alone and inside DfNet4."""

    name: str  # unique, e.g. "mamba/fused"
    backbone: str  # registry name for dfnet4.backbones.create
    label: str  # what the implementation is, in words
    backbone_options: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)  # a [model] table for DfNet4Config.from_dict
    reference: bool = False  # the slow pure-MLX path (limited in the scaling run)


MAMBA = {"num_layers": 2, "d_state": 16, "d_conv": 4, "expand": 2, "linear_groups": 8}
GRU = {"num_layers": 1, "linear_groups": 8, "skip": True}
ATTENTION = {"num_layers": 2, "num_heads": 4, "ffn_expand": 2, "linear_groups": 8, "skip": True, "window": None}

DEFAULT_IMPLS: tuple[Impl, ...] = (
    Impl("mamba/reference", "mamba", "Mamba, pure-MLX reference scan (dfnet4.reference.selective_scan)",
         {**MAMBA, "fused": False}, {"backbone": "mamba", "mamba": {"fused": False}}, reference=True),
    Impl("mamba/fused", "mamba", "Mamba, fused selective scan (dfnet4.ops.selective_scan); the backward "
         "recomputes each block from in_proj's output and the scan's checkpoints (the default)",
         {**MAMBA, "fused": True}, {"backbone": "mamba", "mamba": {"fused": True}}),
    Impl("mamba/fused-stored", "mamba", "Mamba, fused selective scan; MLX autodiff keeps every block's "
         "activations for the backward (recompute=False)",
         {**MAMBA, "fused": True, "recompute": False},
         {"backbone": "mamba", "mamba": {"fused": True, "recompute": False}}),
    Impl("gru/mlx.nn.GRU", "gru", "GRU, mlx.nn.GRU (MLX's own per-step loop)",
         {**GRU, "fused": False}, {"backbone": "gru", "gru": {"fused": False}}, reference=True),
    Impl("gru/fused", "gru", "GRU, fused recurrence (dfnet4.ops.gru)",
         {**GRU, "fused": True}, {"backbone": "gru", "gru": {"fused": True}}),
    Impl("attention", "attention", "Causal multi-head self-attention (MLX ops)",
         dict(ATTENTION), {"backbone": "attention"}),
)


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator of one statistic, with the issue's target."""

    title: str
    measure: str
    stat: str  # "median_ms" or "peak_mib"
    numerator: str
    denominator: str
    op: str  # "<=" or ">="
    target: float


TARGET_RATIOS: tuple[Ratio, ...] = (
    Ratio("train step: mamba fused / attention", "train_step", "median_ms",
          "mamba/fused", "attention", "<=", 1.0),
    Ratio("train step: mamba reference / mamba fused", "train_step", "median_ms",
          "mamba/reference", "mamba/fused", ">=", 10.0),
    Ratio("backbone forward+backward: gru mlx.nn.GRU / gru fused", "backbone_fwd_bwd", "median_ms",
          "gru/mlx.nn.GRU", "gru/fused", ">=", 3.0),
    Ratio("backbone forward+backward peak memory: mamba fused / gru fused", "backbone_fwd_bwd", "peak_mib",
          "mamba/fused", "gru/fused", "<=", 1.5),
)


def select(impls: tuple[Impl, ...] | list[Impl], only: str | None) -> list[Impl]:
    """Filter by a comma-separated list of implementation names or backbone names."""
    if not only:
        return list(impls)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = {i.name for i in impls} | {i.backbone for i in impls}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"--only: unknown {unknown}; choose from {sorted(known)}")
    return [i for i in impls if i.name in wanted or i.backbone in wanted]


def select_measures(spec: str | None) -> list[str]:
    """Comma-separated measurement keys (None = all), validated."""
    if not spec:
        return list(MEASURES)
    wanted = [w.strip() for w in spec.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in MEASURES]
    if unknown:
        raise ValueError(f"--measures: unknown {unknown}; choose from {list(MEASURES)}")
    return [m for m in MEASURES if m in wanted]
