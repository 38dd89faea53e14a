"""Temporal backbones behind one interface: `create(name, input_size, hidden_size, output_size, ...)`."""

from dfnet4.backbones import attention, gru, mamba  # noqa: F401  (each registers itself)
from dfnet4.backbones.base import GroupedLinear, Squeezed
from dfnet4.backbones.registry import (DEFAULT, BackboneOptions, create, entry, fused_flags, get, names,
                                       options_class, register)

__all__ = ["DEFAULT", "BackboneOptions", "GroupedLinear", "Squeezed", "create", "entry", "fused_flags", "get",
           "names", "options_class", "register"]
