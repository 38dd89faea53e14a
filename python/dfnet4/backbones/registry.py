"""The backbone registry: one name -> (module class, options dataclass) per temporal backbone.

Each backbone module registers itself with `@register(name, OptionsClass)`. Everything that lists
backbones reads this registry: DfNet4Config's `[model.<name>]` tables, the CLIs' `--backbone`
choices and fused-kernel flags, the old flat config keys that still load. A new backbone is one
module here and one import in `backbones/__init__.py`; nothing else names it.

Importing this module does not import MLX (the options and the names are plain Python).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

# The backbone of DfNet4Config, RunConfig and the CLIs when none is named: the product is fast
# Mamba training. DeepFilterNet3's own configuration (convert.py, export, --init dfn3) says "gru".
DEFAULT = "mamba"


class BackboneOptions:
    """Base of a backbone's options dataclass (its `[model.<name>]` table).

    Fields carry their rules with dfnet4.schema.param. A field named `fused` (bool or None = use the
    compiled extension when it is importable) is the backbone's fused-kernel switch; `fused_flag`
    names its command-line flag (`fused_scan` -> --fused-scan/--no-fused-scan) and its key in the
    flat layout before the per-backbone tables.
    """

    fused_flag: ClassVar[str | None] = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the backbone class (beyond sizes, layers and groups)."""
        return dataclasses.asdict(self)

    def check(self, model, key: str) -> None:
        """Constraints between these options and the rest of the model config `model` (a DfNet4Config
        whose backbone this is); ConfigError names the field under `key` (e.g. "attention.heads")."""

    @classmethod
    def legacy_keys(cls, name: str) -> dict[str, str]:
        """{old flat [model] key: field}: the layout before per-backbone tables spelled the options
        `<name>_<field>` (mamba_d_state) and the fused switch by its flag (fused_scan)."""
        return {(cls.fused_flag if f.name == "fused" and cls.fused_flag else f"{name}_{f.name}"): f.name
                for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class Backbone:
    name: str
    cls: type
    options: type  # a BackboneOptions dataclass


_REGISTRY: dict[str, Backbone] = {}


def register(name: str, options: type) -> Callable[[type], type]:
    """Class decorator: make a backbone constructible by `create(name, ...)`, with its options table."""
    if not (dataclasses.is_dataclass(options) and issubclass(options, BackboneOptions)):
        raise TypeError(f"backbone {name!r}: options must be a BackboneOptions dataclass, got {options!r}")

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        _REGISTRY[name] = Backbone(name, cls, options)
        cls.backbone_name = name
        return cls

    return deco


def names() -> list[str]:
    """The registered backbone names, sorted."""
    return sorted(_REGISTRY)


def entry(name: str) -> Backbone:
    if name not in _REGISTRY:
        raise ValueError(f"backbone: unknown name {name!r}; choose one of {names()}")
    return _REGISTRY[name]


def get(name: str) -> type:
    """The module class registered as `name`."""
    return entry(name).cls


def options_class(name: str) -> type:
    return entry(name).options


def fused_flags() -> dict[str, str]:
    """{flag key (fused_scan): backbone name} for every backbone with a fused-kernel switch."""
    return {b.options.fused_flag: b.name for b in _REGISTRY.values() if b.options.fused_flag}


def create(name: str, input_size: int, hidden_size: int, output_size: int | None = None, **options):
    """Build the backbone registered as `name`. Options are the backbone class's keyword arguments."""
    return get(name)(input_size, hidden_size, output_size, **options)
