"""DfNet4Config: the model's hyper-parameters; the defaults are DeepFilterNet3's official values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields


@dataclass
class DfNet4Config:
    # temporal model of every recurrent part, and whether its fused kernel is used
    backbone: str = "gru"
    fused_gru: bool | None = None
    fused_scan: bool | None = None
    # signal processing ([df] section of DeepFilterNet3's config.ini)
    sr: int = 48000
    fft_size: int = 960
    hop_size: int = 480
    nb_erb: int = 32
    nb_df: int = 96
    min_nb_erb_freqs: int = 2
    norm_tau: float = 1.0
    lsnr_max: float = 35.0
    lsnr_min: float = -15.0
    df_order: int = 5
    df_lookahead: int = 2
    # network ([deepfilternet] section)
    conv_lookahead: int = 2
    conv_ch: int = 64
    conv_kernel_inp: tuple[int, int] = (3, 3)
    conv_kernel: tuple[int, int] = (1, 3)
    convt_kernel: tuple[int, int] = (1, 3)
    emb_hidden_dim: int = 256
    emb_num_layers: int = 3
    enc_linear_groups: int = 32
    linear_groups: int = 16
    df_hidden_dim: int = 256
    df_num_layers: int = 2
    df_pathway_kernel_size_t: int = 5
    df_gru_linear_groups: int = 8  # DeepFilterNet3's DfDecoder leaves SqueezedGRU_S at its default 8
    # False: DFN3's forward (training, df.enhance): the first conv_lookahead feature frames are only
    # lookahead, the encoder starts at frame conv_lookahead. True: the encoder also runs over them
    # (its outputs for frames before 0 are dropped), as libDF's realtime runtime (DfTract) does.
    # Only the first ~20 output frames differ (the recurrent states start differently).
    warmup_lookahead: bool = False
    # extra options of the non-GRU backbones (ignored by gru)
    mamba_d_state: int = 16
    mamba_d_conv: int = 4
    mamba_expand: int = 2
    # fused mamba only: the backward recomputes each block instead of keeping its activations
    # (about 1/8 the training memory per block, one more block forward; see backbones/mamba_block.py)
    mamba_recompute: bool = True
    attention_heads: int = 4
    attention_window: int | None = None
    attention_ffn_expand: int = 2
    extra: dict = field(default_factory=dict)  # free-form, saved with checkpoints

    def __post_init__(self):
        self.conv_kernel_inp = tuple(self.conv_kernel_inp)
        self.conv_kernel = tuple(self.conv_kernel)
        self.convt_kernel = tuple(self.convt_kernel)
        self.validate()

    @property
    def freq_bins(self) -> int:
        return self.fft_size // 2 + 1

    def validate(self) -> None:
        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                raise ValueError(f"DfNet4Config: {name}={getattr(self, name)!r} {what}")

        need(self.fft_size == 2 * self.hop_size, "fft_size", f"must be 2 * hop_size ({2 * self.hop_size})")
        need(self.nb_erb % 8 == 0, "nb_erb", "must be divisible by 8 (two stride-2 convolutions, 8-band embedding)")
        need(self.nb_df % 2 == 0 and 0 < self.nb_df < self.freq_bins, "nb_df", f"must be even and < {self.freq_bins}")
        need(0 <= self.df_lookahead < self.df_order, "df_lookahead", f"must be in [0, df_order={self.df_order})")
        need(self.conv_lookahead >= self.df_lookahead, "conv_lookahead", f"must be >= df_lookahead={self.df_lookahead}")
        need(self.emb_num_layers >= 2, "emb_num_layers", "must be >= 2 (encoder 1 layer, ERB decoder the rest)")
        need(self.conv_kernel[0] == 1 and self.convt_kernel[0] == 1, "conv_kernel", "(and convt_kernel) need time size 1")
        for name in ("conv_kernel_inp", "conv_kernel", "convt_kernel"):
            need(len(getattr(self, name)) == 2 and getattr(self, name)[1] % 2 == 1, name, "must be (time, odd freq)")
        need(self.convt_kernel[1] == 3, "convt_kernel", "must be (1, 3) (stride-2 transposed convolution)")
        need(isinstance(self.mamba_recompute, bool), "mamba_recompute", "must be true or false")

    def backbone_options(self) -> dict:
        """Keyword options for `dfnet4.backbones.create` beyond sizes, layers and groups."""
        if self.backbone == "gru":
            return {"fused": self.fused_gru}
        if self.backbone == "mamba":
            return {"d_state": self.mamba_d_state, "d_conv": self.mamba_d_conv, "expand": self.mamba_expand,
                    "fused": self.fused_scan, "recompute": self.mamba_recompute}
        if self.backbone == "attention":
            return {"num_heads": self.attention_heads, "window": self.attention_window,
                    "ffn_expand": self.attention_ffn_expand}
        return {}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DfNet4Config":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"DfNet4Config.from_dict: unknown fields {unknown}")
        return cls(**d)
