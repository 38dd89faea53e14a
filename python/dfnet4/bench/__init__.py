"""dfnet4-bench: timing and memory of the backbones (alone, in the model, in a compiled training
step) and their scaling with sequence length. See docs/benchmarks.md."""

from dfnet4.bench.backbones import run_backbones
from dfnet4.bench.runner import Settings
from dfnet4.bench.scaling import run_scaling
from dfnet4.bench.suite import DEFAULT_IMPLS, MEASURES, Impl

__all__ = ["DEFAULT_IMPLS", "MEASURES", "Impl", "Settings", "run_backbones", "run_scaling"]
