"""The DfNet4 model: DeepFilterNet3's architecture with a selectable temporal backbone."""

from dfnet4.model.config import DfNet4Config
from dfnet4.model.dfnet4 import DfNet4
from dfnet4.model import checkpoint

__all__ = ["DfNet4", "DfNet4Config", "checkpoint"]
