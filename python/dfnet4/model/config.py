"""DfNet4Config: the model's hyper-parameters. The sizes default to DeepFilterNet3's official values;
the backbone defaults to dfnet4.backbones.DEFAULT (mamba), so DeepFilterNet3 itself is
DfNet4Config(backbone="gru"). Each backbone's options are a nested table of their own."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from dfnet4 import backbones
from dfnet4.schema import ConfigError, param, require
from dfnet4.schema import validate as validate_fields


def _freq_odd(kernel: tuple[int, int]) -> str | None:
    return None if kernel[1] % 2 else "the frequency size (second) must be odd"


def _time_one(kernel: tuple[int, int]) -> str | None:
    return None if kernel[0] == 1 and kernel[1] % 2 else "need (1, odd frequency size)"


def _backbone_tables(cls: type) -> type:
    """One field per registered backbone, holding its options dataclass: `cfg.mamba.d_state`, TOML
    `[model.mamba]`. Added from the registry so that a new backbone needs no line here."""
    for name in backbones.names():
        if name in cls.__dict__ or name in cls.__annotations__:
            raise TypeError(f"backbone {name!r}: the name is taken by a DfNet4Config field")
        options = backbones.options_class(name)
        cls.__annotations__[name] = options
        setattr(cls, name, field(default_factory=options))
    return cls


@dataclass
@_backbone_tables
class DfNet4Config:
    """Sizes and switches of DfNet4. Besides the fields below, one table per registered backbone
    (`gru`, `mamba`, `attention`: dfnet4.backbones' options dataclasses); only the table of
    `backbone` is used."""

    # temporal model of every recurrent part (dfnet4.backbones); its options are the table of that name
    backbone: str = backbones.DEFAULT
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
        if self.backbone not in backbones.names():
            raise ConfigError("backbone", f"unknown name {self.backbone!r}; choose one of {backbones.names()}")
        getattr(self, self.backbone).check(self, self.backbone)

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
        return getattr(self, self.backbone).kwargs()

    def with_fused(self, fused: bool | None) -> "DfNet4Config":
        """A copy with every backbone's fused-kernel switch set to `fused` (a run-time choice: the
        weights are the same either way; None = the kernels when the extension is built)."""
        return DfNet4Config.from_tables(self.to_dict(), fused_overrides(fused))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_tables(cls, *tables: dict) -> "DfNet4Config":
        """From [model] tables in precedence order (later wins), each in any layout (merge_model_tables)."""
        return cls.from_dict(merge_model_tables(*tables))

    @classmethod
    def from_dict(cls, d: dict) -> "DfNet4Config":
        """From a [model] table: backbone options as tables (`{"mamba": {"d_state": 16}}`), dotted keys
        (`"mamba.d_state"`) or the flat keys of the old layout (`"mamba_d_state"`, `"fused_scan"`);
        an error names the key as it was given."""
        table, spelled = nest_model_keys(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown fields {unknown} (known: {', '.join(sorted(known))})",
                              context="DfNet4Config.from_dict")
        try:
            kwargs = {k: (_options(k, v) if k in backbones.names() else v) for k, v in table.items()}
            return cls(**kwargs)
        except ConfigError as exc:
            if spelled.get(exc.key, exc.key) == exc.key:
                raise
            raise ConfigError(spelled[exc.key], exc.problem, context=exc.context) from None


def _options(name: str, value):
    """A backbone's options dataclass from its table (unchecked: DfNet4Config.validate checks it); the
    table comes from nest_model_keys, which has turned an options dataclass into its dict already."""
    options = backbones.options_class(name)
    if not isinstance(value, dict):
        raise ConfigError(name, f"got {value!r}, need a table", context="DfNet4Config")
    known = [f.name for f in fields(options)]
    for key in value:
        if key not in known:
            raise ConfigError(f"{name}.{key}", f"unknown key (known here: {', '.join(known)})",
                              context="DfNet4Config")
    return options(**value)


def _legacy_keys() -> dict[str, tuple[str, str]]:
    """{old flat [model] key: (backbone, option)}, e.g. mamba_d_state -> (mamba, d_state)."""
    return {old: (name, option) for name in backbones.names()
            for old, option in backbones.options_class(name).legacy_keys(name).items()}


def nest_model_keys(d: dict) -> tuple[dict, dict[str, str]]:
    """The [model] table `d` with every backbone option in its backbone's table.

    Options may be given in their table, as a dotted key ("mamba.d_state", as `--model` takes them)
    or by their flat key of the old layout ("mamba_d_state", "fused_scan": old config files and
    checkpoints). Returns (the nested table, {dotted key: the key as given}). One option given twice
    with different values is a ConfigError naming both spellings.
    """
    legacy = _legacy_keys()
    out: dict = {}
    spelled: dict[str, str] = {}

    def put(name: str, option: str, value, given: str) -> None:
        table = out.setdefault(name, {})
        if not isinstance(table, dict):  # `mamba = 3` beside a mamba option: the table is named as wrong
            raise ConfigError(name, f"got {table!r}, need a table")
        dotted = f"{name}.{option}"
        if option in table and table[option] != value:
            raise ConfigError(given, f"got {value!r}, but {spelled[dotted]} = {table[option]!r} sets the same "
                              "option: give one of them")
        table[option] = value
        spelled[dotted] = given

    for key, value in d.items():
        head, dot, option = key.partition(".")
        if key in legacy:
            put(*legacy[key], value, key)
        elif dot and head in backbones.names():
            put(head, option, value, key)
        elif key in backbones.names() and isinstance(value, dict):
            for option, v in value.items():
                put(key, option, v, f"{key}.{option}")
        elif key in backbones.names() and dataclasses.is_dataclass(value):
            for option, v in dataclasses.asdict(value).items():
                put(key, option, v, f"{key}.{option}")
        elif key in backbones.names() and key in out:
            raise ConfigError(key, f"got {value!r}, need a table")
        else:
            out[key] = value
    return out, spelled


def merge_model_tables(*tables: dict) -> dict:
    """[model] tables in precedence order (later wins), each in any layout, as one nested table."""
    out: dict = {}
    for table in tables:
        nested, _ = nest_model_keys(table)
        for key, value in nested.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = dict(value) if isinstance(value, dict) else value
    return out


def resumed_model(saved: dict, current: dict) -> dict:
    """A resumed run's [model] table: the checkpoint's (its sizes and options; an old checkpoint's flat
    keys moved into their tables) with only the current run's fused switches (same weights either way)."""
    return merge_model_tables(saved, fused_choices(current))


def fused_overrides(fused: bool | None) -> dict:
    """{backbone: {"fused": fused}} for every backbone with a fused-kernel switch: [model] overrides
    that set them all (e.g. to None when loading a checkpoint trained elsewhere)."""
    return {name: {"fused": fused} for name in backbones.fused_flags().values()}


def fused_choices(table: dict) -> dict:
    """The fused-kernel switches set in a [model] table, as a nested table ({"mamba": {"fused": True}})."""
    nested, _ = nest_model_keys(table)
    return {name: {"fused": nested[name]["fused"]} for name in backbones.names()
            if isinstance(nested.get(name), dict) and "fused" in nested[name]}
