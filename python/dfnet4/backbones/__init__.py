"""Temporal backbones behind one interface: `create(name, input_size, hidden_size, output_size, ...)`."""

from dfnet4.backbones import attention, gru, mamba  # noqa: F401  (each registers itself)
from dfnet4.backbones.base import GroupedLinear, Squeezed, create, get, names, register

__all__ = ["GroupedLinear", "Squeezed", "create", "get", "names", "register"]
