"""DfNet4Config: the model's hyper-parameters; the defaults are DeepFilterNet3's official values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from dfnet4.schema import ConfigError, param, require
from dfnet4.schema import validate as validate_fields


def _freq_odd(kernel: tuple[int, int]) -> str | None:
    return None if kernel[1] % 2 else "the frequency size (second) must be odd"


def _time_one(kernel: tuple[int, int]) -> str | None:
    return None if kernel[0] == 1 and kernel[1] % 2 else "need (1, odd frequency size)"


@dataclass
class DfNet4Config:
    # temporal model of every recurrent part, and whether its fused kernel is used
    backbone: str = "gru"
    fused_gru: bool | None = None
    fused_scan: bool | None = None
    # signal processing ([df] section of DeepFilterNet3's config.ini)
    sr: int = param(48000, ge=1)
    fft_size: int = param(960, ge=2)
    hop_size: int = param(480, ge=1)
    nb_erb: int = param(32, ge=8, multiple_of=8)  # two stride-2 convolutions, 8-band embedding
    nb_df: int = param(96, ge=2, multiple_of=2)
    min_nb_erb_freqs: int = param(2, ge=1)
    norm_tau: float = param(1.0, gt=0)
    lsnr_max: float = param(35.0)
    lsnr_min: float = param(-15.0)
    df_order: int = param(5, ge=1)
    df_lookahead: int = param(2, ge=0)
    # network ([deepfilternet] section)
    conv_lookahead: int = param(2, ge=0)
    conv_ch: int = param(64, ge=1)
    conv_kernel_inp: tuple[int, int] = param((3, 3), ge=1, check=_freq_odd)
    conv_kernel: tuple[int, int] = param((1, 3), ge=1, check=_time_one)
    convt_kernel: tuple[int, int] = param((1, 3), check=lambda k: None if k == (1, 3) else
                                          "need (1, 3) (stride-2 transposed convolution)")
    emb_hidden_dim: int = param(256, ge=1)
    emb_num_layers: int = param(3, ge=2)  # encoder 1 layer, ERB decoder the rest
    enc_linear_groups: int = param(32, ge=1)
    linear_groups: int = param(16, ge=1)
    df_hidden_dim: int = param(256, ge=1)
    df_num_layers: int = param(2, ge=1)
    df_pathway_kernel_size_t: int = param(5, ge=1)
    df_gru_linear_groups: int = param(8, ge=1)  # DeepFilterNet3's DfDecoder leaves SqueezedGRU_S at its default 8
    # False: DFN3's forward (training, df.enhance): the first conv_lookahead feature frames are only
    # lookahead, the encoder starts at frame conv_lookahead. True: the encoder also runs over them
    # (its outputs for frames before 0 are dropped), as libDF's realtime runtime (DfTract) does.
    # Only the first ~20 output frames differ (the recurrent states start differently).
    warmup_lookahead: bool = False
    # extra options of the non-GRU backbones (ignored by gru)
    mamba_d_state: int = param(16, ge=1)
    mamba_d_conv: int = param(4, ge=1)
    mamba_expand: int = param(2, ge=1)
    # fused mamba only: the backward recomputes each block instead of keeping its activations
    # (about 1/8 the training memory per block, one more block forward; see backbones/mamba_block.py)
    mamba_recompute: bool = True
    attention_heads: int = param(4, ge=1)
    attention_window: int | None = param(None, ge=1)
    attention_ffn_expand: int = param(2, ge=1)
    extra: dict = field(default_factory=dict)  # free-form, saved with checkpoints

    def __post_init__(self):
        self.validate()

    @property
    def freq_bins(self) -> int:
        return self.fft_size // 2 + 1

    @property
    def emb_dim(self) -> int:
        """Width of the embedding between encoder and decoders."""
        return self.conv_ch * self.nb_erb // 4

    def validate(self) -> None:
        """Every field by its rule (dfnet4.schema), then the constraints between fields; ConfigError
        names the field to change."""
        try:
            validate_fields(self)
            self._validate_relations()
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.problem, context="DfNet4Config") from None

    def _validate_relations(self) -> None:
        require(self.fft_size == 2 * self.hop_size, "fft_size", self.fft_size, f"2 * hop_size ({2 * self.hop_size})")
        require(self.nb_df < self.freq_bins, "nb_df", self.nb_df, f"< fft_size / 2 + 1 ({self.freq_bins})")
        require(self.df_lookahead < self.df_order, "df_lookahead", self.df_lookahead,
                f"0 <= df_lookahead < df_order ({self.df_order})")
        require(self.conv_lookahead >= self.df_lookahead, "conv_lookahead", self.conv_lookahead,
                f">= df_lookahead ({self.df_lookahead})")
        require(self.lsnr_max > self.lsnr_min, "lsnr_max", self.lsnr_max, f"> lsnr_min ({self.lsnr_min})")
        from dfnet4.dsp.erb import erb_widths

        try:
            erb_widths(self.sr, self.fft_size, self.nb_erb, self.min_nb_erb_freqs)
        except ValueError:
            raise ConfigError("nb_erb", f"got {self.nb_erb}, the {self.nb_erb} ERB bands of at least "
                              f"min_nb_erb_freqs={self.min_nb_erb_freqs} bins do not fit the {self.freq_bins} "
                              f"bins of fft_size={self.fft_size}") from None
        # grouped linear layers split their input and output into equal groups
        for groups, sizes in self._grouped_sizes().items():
            bad = {what: n for what, n in sizes.items() if n % getattr(self, groups)}
            require(not bad, groups, getattr(self, groups),
                    "a divisor of " + ", ".join(f"{what} ({n})" for what, n in sizes.items()))
        if self.backbone == "attention":
            for hidden in ("emb_hidden_dim", "df_hidden_dim"):
                size = getattr(self, hidden)
                # RoPE rotates pairs of features: every head needs at least two
                require(size % self.attention_heads == 0 and size // self.attention_heads >= 2, "attention_heads",
                        self.attention_heads, f"a divisor of {hidden} ({size}) leaving heads of >= 2 features")
        if self.backbone == "mamba" and self.fused_scan is not False:
            if self.fused_scan or _extension_available():
                from dfnet4.ops.causal_conv import max_width

                require(self.mamba_d_conv <= max_width(), "mamba_d_conv", self.mamba_d_conv,
                        f"<= {max_width()} with the fused kernels (or fused_scan = false)")

    def _grouped_sizes(self) -> dict[str, dict[str, int]]:
        emb = ("conv_ch * nb_erb / 4", self.emb_dim)
        return {
            "enc_linear_groups": dict([("conv_ch * nb_df / 2", self.conv_ch * self.nb_df // 2), emb]),
            "linear_groups": dict([emb, ("emb_hidden_dim", self.emb_hidden_dim), ("df_hidden_dim", self.df_hidden_dim),
                                   ("nb_df * df_order * 2", self.nb_df * self.df_order * 2)]),
            "df_gru_linear_groups": dict([emb, ("df_hidden_dim", self.df_hidden_dim)]),
        }

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
            raise ConfigError(unknown[0], f"unknown fields {unknown} (known: {', '.join(sorted(known))})",
                              context="DfNet4Config.from_dict")
        return cls(**d)


def _extension_available() -> bool:
    from dfnet4 import _extension

    return _extension.available()
